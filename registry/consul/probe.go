package consul

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// probeInterval is how often a Registry whose watches are failing asks
// the agent whether it is back.
const probeInterval = 500 * time.Millisecond

// prober lets failing watches wait out their (long, jittered) backoff
// but wake as soon as the agent answers again, so that a registry
// returning after an outage is seen within about probeInterval however
// long the backoff has grown. One probe serves every watch of the
// Registry: an outage costs two requests a second per process, not per
// watch, and recovery does not depend on the number of watches.
//
// The probe goroutine runs only while some watch is waiting; it is
// owned by the Registry and ended by Close.
type prober struct {
	mu      sync.Mutex // guards the fields below
	waiting int
	running bool
	closed  bool
	up      chan struct{} // closed when the agent answers after a failed probe
	checks  map[uint64]func(context.Context) error
	nextID  uint64
	wg      sync.WaitGroup
	stop    chan struct{}
}

func newProber() *prober {
	return &prober{up: make(chan struct{}), stop: make(chan struct{}), checks: map[uint64]func(context.Context) error{}}
}

// waitRetry sleeps for d, or until the agent comes back, or until ctx is
// done; it reports whether ctx is still live. It keeps the probe running
// while it waits.
func (r *Registry) waitRetry(ctx context.Context, d time.Duration) bool {
	return r.wait(ctx, d, true, nil)
}

// waitRetryCheck is waitRetry for a caller that can say whether it would
// succeed now: while it waits, the probe also runs check (one waiting
// caller's, per probe), and wakes every waiting caller when it succeeds.
// A watch whose agent answers the leader check throughout but failed its
// own read (a 500, a bad answer) so recovers within a probe interval, not
// at the end of a backoff that may have grown to seconds.
func (r *Registry) waitRetryCheck(ctx context.Context, d time.Duration, check func(context.Context) error) bool {
	return r.wait(ctx, d, true, check)
}

// sleepOrRecovered is waitRetry for a caller that is not failing (a
// registration between heartbeats): it wakes early if a probe started by
// failing watches sees the agent return, so that a restarted agent gets
// its registrations back at once, but it does not start the probe.
func (r *Registry) sleepOrRecovered(ctx context.Context, d time.Duration) bool {
	return r.wait(ctx, d, false, nil)
}

func (r *Registry) wait(ctx context.Context, d time.Duration, failing bool, check func(context.Context) error) bool {
	p := r.probe
	p.mu.Lock()
	up := p.up
	if check != nil {
		id := p.nextID
		p.nextID++
		p.checks[id] = check
		defer func() {
			p.mu.Lock()
			delete(p.checks, id)
			p.mu.Unlock()
		}()
	}
	if failing {
		p.waiting++
		if !p.running && !p.closed {
			p.running = true
			p.wg.Go(func() { r.probeLoop() })
		}
	}
	p.mu.Unlock()
	if failing {
		defer func() {
			p.mu.Lock()
			p.waiting--
			p.mu.Unlock()
		}()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-up:
	case <-ctx.Done():
		return false
	}
	return ctx.Err() == nil
}

func (r *Registry) probeLoop() {
	p := r.probe
	down := false
	for {
		t := time.NewTimer(probeInterval/2 + rand.N(probeInterval/2))
		select {
		case <-p.stop:
			t.Stop()
			return
		case <-t.C:
		}
		p.mu.Lock()
		if p.waiting == 0 || p.closed {
			p.running = false
			p.mu.Unlock()
			return
		}
		var check func(context.Context) error
		for _, c := range p.checks { // any one; map order varies
			check = c
			break
		}
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := r.client.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx))
		wake := false
		switch {
		case err != nil:
			down = true
		case down:
			// Back after a failure: wake every waiting watch. A leader
			// check that never failed wakes nobody by itself, so errors
			// that are not the agent's absence (a denied token) keep
			// their backoff.
			down = false
			wake = true
		}
		if err == nil && check != nil && check(ctx) == nil {
			// A waiting caller's own read works again.
			wake = true
		}
		cancel()
		if wake {
			p.mu.Lock()
			close(p.up)
			p.up = make(chan struct{})
			p.mu.Unlock()
		}
	}
}

// close stops the probe goroutine and waits for it.
func (p *prober) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.stop)
	}
	p.mu.Unlock()
	p.wg.Wait()
}
