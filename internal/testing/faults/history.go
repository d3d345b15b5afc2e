// Package faults is Wayfinder's fault suite: it runs real ClientConns
// against memory, Consul and etcd while the registry is restarted, its
// leader killed, taken down, and its services churned, records every
// ClientConn's history of resolver states, and checks the history, not
// spot samples:
//
//   - every client converges to the registry's truth once the faults stop;
//   - no client ever goes back to an older state;
//   - no update is emitted when nothing changed;
//   - no error ever produces an empty set.
//
// The clients run with the resolver's default mass-removal guard, which
// deliberately shows clients a set the registry never held: when the
// registry's set shrinks by more than half (the suite drains its service
// to zero), the guard publishes the registry's set plus the instances
// clients still had, for up to its hold. Such a state names what it keeps
// (resolver.KeptInstances), the Recorder records it, and the checker
// judges a held update by what the guard promises:
//
//   - the rest of the set, without the kept instances, is a state the
//     registry held, and not an older one than the client saw before:
//     that part obeys "no going back" as any update does;
//   - every kept instance is in the client's previous set: the guard keeps
//     what the client had and never brings back one it was told is gone;
//     or, for a client that skipped a state (or joined during the hold)
//     and so never saw it at all, in a state the registry held between
//     the client's last one and the held update's rest;
//   - the hold ends, with an update that keeps nothing, within the
//     guard's hold plus HoldSlack of the first held update;
//   - "no update without a change" is about the set: a held update equal
//     to the previous set is a repeat, held or not, since the resolver
//     never sends a state whose only news is that it is (or is no
//     longer) held.
//
// The tests run in `make test`; `make faults` runs them verbosely, and
// WAYFINDER_FAULTS_SOAK=10m makes each scenario repeat its faults for
// that long.
//
// A Recorder is a load-balancing policy that wraps grpc-go's round_robin
// and records what gRPC hands the policy: each resolver state (as the set
// of instance IDs, with the ones the guard keeps) and each resolver
// error, in order.
package faults

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gbalancer "google.golang.org/grpc/balancer"
	_ "google.golang.org/grpc/balancer/roundrobin" // the wrapped policy
	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Event is one entry of a ClientConn's history: a resolver state (Update)
// or a resolver error.
type Event struct {
	Update bool
	Set    []string // sorted instance IDs, for an update
	// Kept is, for an update the mass-removal guard holds, the IDs in
	// Set that it keeps although the registry no longer lists them
	// (resolver.KeptInstances); nil otherwise.
	Kept []string
	Err  string // for an error
	At   time.Time
}

func (e Event) String() string {
	switch {
	case e.Update && e.Kept != nil:
		return "held" + fmt.Sprint(e.Set) + "kept" + fmt.Sprint(e.Kept)
	case e.Update:
		return "update" + fmt.Sprint(e.Set)
	}
	return "error(" + e.Err + ")"
}

// PolicyName is the recording policy, registered with gRPC by this
// package's init. Its configuration names the Recorder:
// {"wayfinder_faults_recorder":{"recorder":7}}; see
// Recorder.ServiceConfig.
const PolicyName = "wayfinder_faults_recorder"

func init() { gbalancer.Register(recBuilder{}) }

// Recorder records the history of the ClientConn that uses its service
// configuration. Use one ClientConn per Recorder.
type Recorder struct {
	id int64

	mu      sync.Mutex // guards events and changed
	events  []Event
	changed chan struct{} // closed and replaced on every event
}

var (
	recorderSeq atomic.Int64
	recorders   sync.Map // id → *Recorder
)

// NewRecorder returns a recorder. Release it with Close.
func NewRecorder() *Recorder {
	r := &Recorder{id: recorderSeq.Add(1), changed: make(chan struct{})}
	recorders.Store(r.id, r)
	return r
}

// Close forgets the recorder; its ClientConn should be closed first.
func (r *Recorder) Close() { recorders.Delete(r.id) }

// ServiceConfig is the service configuration that selects the recording
// policy for this recorder.
func (r *Recorder) ServiceConfig() string {
	return fmt.Sprintf(`{"loadBalancingConfig":[{%q:{"recorder":%d}}]}`, PolicyName, r.id)
}

// Events returns a copy of the history.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Last returns the last update's set, and whether there was one.
func (r *Recorder) Last() ([]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Update {
			return r.events[i].Set, true
		}
	}
	return nil, false
}

// WaitFor waits up to d until the last update's set is want.
func (r *Recorder) WaitFor(want []string, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if got, ok := r.Last(); ok && slices.Equal(got, want) {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
			got, _ := r.Last()
			return fmt.Errorf("not converged within %v: last update %v, want %v", d, got, want)
		}
	}
}

func (r *Recorder) add(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.At = time.Now()
	r.events = append(r.events, e)
	close(r.changed)
	r.changed = make(chan struct{})
}

type recBuilder struct{}

type recConfig struct {
	serviceconfig.LoadBalancingConfig
	Recorder int64 `json:"recorder"`
}

func (recBuilder) Name() string { return PolicyName }

func (recBuilder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	var c recConfig
	if err := json.Unmarshal(js, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", PolicyName, err)
	}
	if _, ok := recorders.Load(c.Recorder); !ok {
		return nil, fmt.Errorf("%s: no recorder %d", PolicyName, c.Recorder)
	}
	return &c, nil
}

func (recBuilder) Build(cc gbalancer.ClientConn, opts gbalancer.BuildOptions) gbalancer.Balancer {
	return &recBalancer{Balancer: gbalancer.Get("round_robin").Build(cc, opts)}
}

// recBalancer is round_robin, with every input recorded first. gRPC
// calls a balancer from one goroutine at a time, so r needs no lock.
type recBalancer struct {
	gbalancer.Balancer
	r *Recorder
}

func (b *recBalancer) UpdateClientConnState(s gbalancer.ClientConnState) error {
	if c, ok := s.BalancerConfig.(*recConfig); ok && b.r == nil {
		if r, ok := recorders.Load(c.Recorder); ok {
			b.r = r.(*Recorder)
		}
	}
	if b.r == nil {
		return fmt.Errorf("%s: no recorder configured", PolicyName)
	}
	set := make([]string, 0, len(s.ResolverState.Endpoints))
	for _, ep := range s.ResolverState.Endpoints {
		inst, ok := instance.FromEndpoint(ep)
		if !ok {
			set = append(set, "?"+fmt.Sprint(ep.Addresses))
			continue
		}
		set = append(set, inst.ID)
	}
	slices.Sort(set)
	b.r.add(Event{Update: true, Set: set, Kept: resolver.KeptInstances(s.ResolverState)})
	s.BalancerConfig = nil // round_robin takes none
	return b.Balancer.UpdateClientConnState(s)
}

func (b *recBalancer) ResolverError(err error) {
	if b.r != nil {
		b.r.add(Event{Err: err.Error()})
	}
	b.Balancer.ResolverError(err)
}

// Truth is the sequence of sets the registry held, in order, as written
// by one writer. Sets must be distinct so that a state maps to one
// position.
type Truth struct {
	mu   sync.Mutex
	sets [][]string
}

// Append records that the registry now holds set.
func (t *Truth) Append(set []string) {
	s := slices.Clone(set)
	slices.Sort(s)
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := len(t.sets); n > 0 && slices.Equal(t.sets[n-1], s) {
		return
	}
	t.sets = append(t.sets, s)
}

// Sets returns the sequence.
func (t *Truth) Sets() [][]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.sets)
}

// Final returns the last set.
func (t *Truth) Final() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.sets) == 0 {
		return nil
	}
	return t.sets[len(t.sets)-1]
}

// HoldSlack is how much longer than the guard's hold Check lets a held
// run last: the hold starts before the first held update a client sees,
// and its end takes a moment to reach the client.
const HoldSlack = 2 * time.Second

// Check checks a history against the truth and returns every violation:
//
//   - an update whose set the registry never held (this covers an empty
//     set produced by an error);
//   - an update older than an earlier one (going back);
//   - two updates in a row with the same set and no error between them
//     (an update when nothing changed; after an error, one repeat is the
//     resolver telling gRPC it recovered);
//   - an empty update right after an error, unless the registry really
//     held an empty set then;
//   - a last update other than the final truth (no convergence).
//
// A held update (Kept set), which the guard may send while hold > 0, is
// judged as the package documentation says: its set without the kept
// instances takes the place of the set in the first two rules, its kept
// instances must be in the client's previous set (or, never seen by the
// client, in a truth state between its last one and the rest's), and an update that
// keeps nothing must follow within hold plus HoldSlack of the run's first
// held update. With hold 0 (no guard) a held update is a violation.
func Check(events []Event, truth [][]string, hold time.Duration) error {
	index := map[string]int{}
	for i, s := range truth {
		k := strings.Join(s, ",")
		if _, dup := index[k]; dup {
			return fmt.Errorf("faults: the truth holds %v twice; a history cannot be placed in it", s)
		}
		index[k] = i
	}
	var errs []error
	pos := -1
	var prev []string
	havePrev, errSince := false, false
	heldFrom := -1            // the first held update of the current run; -1 if none
	seen := map[string]bool{} // every ID in the client's sets so far
	for n, e := range events {
		if !e.Update {
			errSince = true
			continue
		}
		reg := e.Set // the registry's part of the set
		if e.Kept != nil {
			if hold <= 0 {
				errs = append(errs, fmt.Errorf("event %d: update %v keeps %v, with the guard off", n, e.Set, e.Kept))
			}
			if heldFrom < 0 {
				heldFrom = n
			}
			reg = slices.DeleteFunc(slices.Clone(e.Set), func(id string) bool { return slices.Contains(e.Kept, id) })
			i, regOK := index[strings.Join(reg, ",")]
			for _, k := range e.Kept {
				switch {
				case !slices.Contains(e.Set, k):
					errs = append(errs, fmt.Errorf("event %d: held update %v keeps %s, which is not in it", n, e.Set, k))
				case havePrev && slices.Contains(prev, k):
				case seen[k]:
					errs = append(errs, fmt.Errorf("event %d: held update %v keeps %s, which the client did not have (%v): it was told it is gone", n, e.Set, k, prev))
				case regOK && !heldBetween(truth, k, max(pos, 0), i):
					// The guard keeps what its watch had, which a client
					// that skipped a state (or joined during the hold)
					// may never have seen: that is an instance of a
					// state between the client's and this one.
					errs = append(errs, fmt.Errorf("event %d: held update %v keeps %s, which the client did not have (%v) and no state since held", n, e.Set, k, prev))
				}
			}
		} else if heldFrom >= 0 {
			if d := e.At.Sub(events[heldFrom].At); d > hold+HoldSlack {
				errs = append(errs, fmt.Errorf("event %d: the hold from event %d ended after %v, later than the guard's %v hold plus %v", n, heldFrom, d, hold, HoldSlack))
			}
			heldFrom = -1
		}
		i, ok := index[strings.Join(reg, ",")]
		switch {
		case !ok && e.Kept != nil:
			errs = append(errs, fmt.Errorf("event %d: held update %v keeps %v, and the rest %v is a set the registry never held", n, e.Set, e.Kept, reg))
		case !ok && len(e.Set) == 0 && errSince:
			errs = append(errs, fmt.Errorf("event %d: an error produced an empty set", n))
		case !ok:
			errs = append(errs, fmt.Errorf("event %d: update %v is a set the registry never held", n, e.Set))
		case i < pos:
			errs = append(errs, fmt.Errorf("event %d: update %v goes back to state %d after state %d", n, reg, i, pos))
		}
		if havePrev && slices.Equal(prev, e.Set) && !errSince {
			errs = append(errs, fmt.Errorf("event %d: update %v repeats the previous one with nothing changed", n, e.Set))
		}
		if ok {
			pos = max(pos, i)
		}
		prev, havePrev, errSince = e.Set, true, false
		for _, id := range e.Set {
			seen[id] = true
		}
	}
	if heldFrom >= 0 {
		errs = append(errs, fmt.Errorf("the hold from event %d never ended", heldFrom))
	}
	if len(truth) > 0 {
		final := truth[len(truth)-1]
		if !havePrev || !slices.Equal(prev, final) {
			errs = append(errs, fmt.Errorf("last update %v is not the registry's final set %v", prev, final))
		}
	}
	return errors.Join(errs...)
}

// heldBetween reports whether a truth state from index from up to, not
// including, to holds id.
func heldBetween(truth [][]string, id string, from, to int) bool {
	for j := from; j < to && j < len(truth); j++ {
		if slices.Contains(truth[j], id) {
			return true
		}
	}
	return false
}
