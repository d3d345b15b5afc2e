// Package shard is the frame every Wayfinder policy is built on: grpc's
// endpointsharding with pick_first children, health listener enabled,
// exactly as grpc's own round_robin, plus a hook that turns the
// children's states into the policy's picker.
//
// # Pick counting
//
// While inspect.CountPicks is in effect, the frame wraps each ready
// child's picker, as the policy receives it, in one that adds 1 to a
// counter kept per address across picker rebuilds, so every policy built
// on the frame counts picks without doing anything. The switch is read
// when a picker is built, so the pick path of a balancer that does not
// count is exactly the policy's own. A balancer nested in another
// Wayfinder policy (its ClientConn is a Parent) never counts: the parent
// counts the same calls.
//
// # Concurrency
//
// Balancer.mu guards the policy's state and serialises picker builds.
// Lock order: endpointsharding's mutex -> Balancer.mu (endpointsharding
// calls UpdateState while holding its own). Balancer.mu is never held
// while calling into the child balancer, so the order cannot invert.
package shard

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/experimental/balancer/weight"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Endpoint is one child of the balancer as a picker sees it.
type Endpoint struct {
	// Addr is the endpoint's first address, the key endpointsharding
	// uses, so it identifies the endpoint across updates.
	Addr string
	// Instance is the registry instance from the endpoint's attributes;
	// zero if the endpoint was not made by Wayfinder's resolver.
	Instance registry.Instance
	// Weight is Instance.EffectiveWeight, or grpc's weight attribute for
	// foreign endpoints, never 0.
	Weight uint32
	// Unweighted reports that no weight was set (Instance.Weight 0, or
	// no weight attribute), so that Weight is registry.DefaultWeight.
	Unweighted bool
	// State and Picker are the pick_first child's.
	State  connectivity.State
	Picker gbalancer.Picker
}

// Ready reports whether the endpoint can take calls.
func (e *Endpoint) Ready() bool { return e.State == connectivity.Ready }

// Policy is the part of a balancer that differs between policies.
type Policy interface {
	// SetConfig receives the parsed config of each ClientConn update,
	// before endpoints are updated. It may reject the config's type.
	SetConfig(serviceconfig.LoadBalancingConfig) error
	// Picker returns the picker for the current children; all holds
	// every endpoint, ready the ready ones, in the same order. When ready
	// is empty the result is ignored (endpointsharding's picker queues or
	// fails calls), but the call still lets the policy drop state for
	// endpoints that are gone. Calls are serialised; the callee owns the
	// slices.
	Picker(all, ready []Endpoint) gbalancer.Picker
}

// Balancer is a grpc balancer running a Policy over endpointsharding.
type Balancer struct {
	// Embedded to intercept UpdateState from endpointsharding and pass
	// everything else through.
	gbalancer.ClientConn
	child gbalancer.Balancer

	parent uint64 // the inspect ID of the Parent cc belongs to; 0 if none. Do not count picks if set

	mu          sync.Mutex // guards the fields below; see the package doc for lock order
	resolverErr error      // the resolver's last error since the last update; see UpdateState
	policy      Policy
	last        []Endpoint   // the endpoints of the last update, for inspection
	counting    bool         // the last picker counts picks
	picks       PickCounters // by address, for endpoints in last

	unregister func() // removes the balancer from package inspect
}

// Parent is implemented by the ClientConn a Wayfinder policy that wraps
// other policies (outlier ejection, zone-aware) gives its children. A
// balancer built on a Parent is nested: it does not count picks, as the
// parent counts the same calls, and package inspect shows it inside its
// parent.
type Parent interface {
	gbalancer.ClientConn
	// WayfinderParent returns the parent's ID in package inspect.
	WayfinderParent() uint64
}

// ParentID returns the inspect ID of the Parent cc is, 0 if it is none.
func ParentID(cc gbalancer.ClientConn) uint64 {
	if p, ok := cc.(Parent); ok {
		return p.WayfinderParent()
	}
	return 0
}

// PickCounters keeps per-address pick counters across picker rebuilds,
// for policies that count picks themselves (those not built on the
// frame). It is not safe for concurrent use but for the counters
// themselves, which pickers add to.
type PickCounters struct {
	byAddr  map[string]*atomic.Uint64
	retired uint64
}

// Counter returns addr's counter, creating it.
func (c *PickCounters) Counter(addr string) *atomic.Uint64 {
	if c.byAddr == nil {
		c.byAddr = map[string]*atomic.Uint64{}
	}
	n := c.byAddr[addr]
	if n == nil {
		n = new(atomic.Uint64)
		c.byAddr[addr] = n
	}
	return n
}

// Get returns addr's count, 0 if it has no counter.
func (c *PickCounters) Get(addr string) uint64 {
	if n := c.byAddr[addr]; n != nil {
		return n.Load()
	}
	return 0
}

// Retain drops the counters of addresses keep rejects, adding their
// counts to the total so that it never decreases. A pick made with a
// picker built before the removal and after Retain is lost.
func (c *PickCounters) Retain(keep func(addr string) bool) {
	for addr, n := range c.byAddr {
		if !keep(addr) {
			c.retired += n.Load()
			delete(c.byAddr, addr)
		}
	}
}

// Len returns the number of counters.
func (c *PickCounters) Len() int { return len(c.byAddr) }

// Total returns the picks of every address, removed ones included.
func (c *PickCounters) Total() uint64 {
	t := c.retired
	for _, n := range c.byAddr {
		t += n.Load()
	}
	return t
}

// CountingPicker wraps a picker and adds 1 to N for each pick that
// returns no error.
type CountingPicker struct {
	gbalancer.Picker
	N *atomic.Uint64
}

// Pick implements balancer.Picker.
func (p *CountingPicker) Pick(info gbalancer.PickInfo) (gbalancer.PickResult, error) {
	r, err := p.Picker.Pick(info)
	if err == nil {
		p.N.Add(1)
	}
	return r, err
}

// Describer is an optional interface of a Policy: it adds
// policy-specific statistics for an endpoint to the debug view. It is
// called with Balancer.mu held, never on the pick path.
type Describer interface {
	Describe(addr string) map[string]string
}

// New returns a balancer for cc running p.
func New(cc gbalancer.ClientConn, opts gbalancer.BuildOptions, p Policy) *Balancer {
	b := &Balancer{ClientConn: cc, policy: p, parent: ParentID(cc)}
	b.child = endpointsharding.NewBalancer(b, opts, gbalancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	_, b.unregister = inspect.Register(opts.Target.String(), policyName(p), b.parent, b.describe)
	return b
}

// UpdateClientConnState implements balancer.Balancer.
func (b *Balancer) UpdateClientConnState(s gbalancer.ClientConnState) error {
	b.mu.Lock()
	b.resolverErr = nil
	err := b.policy.SetConfig(s.BalancerConfig)
	b.mu.Unlock()
	if err != nil {
		return err
	}
	return b.child.UpdateClientConnState(gbalancer.ClientConnState{
		// The health listener lets pick_first children honour client-side
		// health checks, as in grpc's round_robin. The config is not
		// forwarded: it is ours, not pick_first's.
		ResolverState: pickfirst.EnableHealthListener(s.ResolverState),
	})
}

// ResolverError implements balancer.Balancer. With no endpoints, RPCs
// fail with err (see UpdateState).
func (b *Balancer) ResolverError(err error) {
	b.mu.Lock()
	b.resolverErr = err
	b.mu.Unlock()
	b.child.ResolverError(err)
}

// UpdateSubConnState implements balancer.Balancer; it is never called
// because pick_first registers state listeners.
func (b *Balancer) UpdateSubConnState(gbalancer.SubConn, gbalancer.SubConnState) {}

// ExitIdle implements balancer.Balancer.
func (b *Balancer) ExitIdle() { b.child.ExitIdle() }

// Close implements balancer.Balancer.
func (b *Balancer) Close() {
	b.unregister()
	b.child.Close()
}

// describe reports the endpoints of the last update for package inspect.
func (b *Balancer) describe(ib *inspect.Balancer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, _ := b.policy.(Describer)
	ib.CountsPicks, ib.Picks = b.counting, b.picks.Total()
	out := make([]inspect.Endpoint, len(b.last))
	for i, e := range b.last {
		out[i] = inspect.Endpoint{Addr: e.Addr, Instance: e.Instance.ID, Zone: e.Instance.Zone, State: e.State.String(), Weight: e.Weight,
			Picks: b.picks.Get(e.Addr)}
		if d != nil {
			out[i].Stats = d.Describe(e.Addr)
		}
	}
	ib.Endpoints = out
}

// countLocked starts or stops counting picks, as package inspect says,
// drops the counters of endpoints not in all, and wraps the pickers of
// the ready endpoints in counting ones.
func (b *Balancer) countLocked(all []Endpoint) {
	b.counting = b.parent == 0 && inspect.CountingPicks()
	if b.picks.Len() > 0 {
		live := make(map[string]bool, len(all))
		for _, e := range all {
			live[e.Addr] = true
		}
		b.picks.Retain(func(addr string) bool { return live[addr] })
	}
	if !b.counting {
		return
	}
	for i := range all {
		if all[i].Ready() {
			all[i].Picker = &CountingPicker{Picker: all[i].Picker, N: b.picks.Counter(all[i].Addr)}
		}
	}
}

// policyName names a policy by its package ("*p2c.policy" -> "p2c").
func policyName(p Policy) string {
	n := strings.TrimPrefix(fmt.Sprintf("%T", p), "*")
	if i := strings.IndexByte(n, '.'); i > 0 {
		n = n[:i]
	}
	return n
}

// UpdateState intercepts endpointsharding's aggregated state and replaces
// its round-robin picker with the policy's when any child is ready.
// Otherwise endpointsharding's picker is right as it is: it queues calls
// while children connect and fails them when all are in failure; but
// with no children at all it fails them with "no children to pick from",
// and drops the resolver's error, which says why (Wayfinder's resolver:
// "service X has no instances in <registry>"), so that error is used
// instead.
func (b *Balancer) UpdateState(state gbalancer.State) {
	children := endpointsharding.ChildStatesFromPicker(state.Picker)
	if len(children) == 0 {
		b.mu.Lock()
		if err := b.resolverErr; err != nil {
			state = gbalancer.State{ConnectivityState: connectivity.TransientFailure, Picker: base.NewErrPicker(err)}
		}
		b.mu.Unlock()
	}
	all := make([]Endpoint, len(children))
	nready := 0
	for i, c := range children {
		all[i] = FromChild(c.Endpoint, c.State)
		if all[i].Ready() {
			nready++
		}
	}
	if nready == 0 {
		b.mu.Lock()
		b.last = slices.Clone(all) // the policy owns all
		b.countLocked(all)
		b.policy.Picker(all, nil)
		b.mu.Unlock()
		b.ClientConn.UpdateState(state)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last = slices.Clone(all) // the policy owns all
	b.countLocked(all)
	ready := make([]Endpoint, 0, nready)
	for _, e := range all {
		if e.Ready() {
			ready = append(ready, e)
		}
	}
	b.ClientConn.UpdateState(gbalancer.State{ConnectivityState: connectivity.Ready, Picker: b.policy.Picker(all, ready)})
}

// BetterState returns the better of two connectivity states of one
// endpoint's SubConns: READY, then CONNECTING, IDLE, TRANSIENT_FAILURE
// and SHUTDOWN, as pick_first would report the endpoint.
func BetterState(a, b connectivity.State) connectivity.State {
	rank := func(s connectivity.State) int {
		switch s {
		case connectivity.Ready:
			return 4
		case connectivity.Connecting:
			return 3
		case connectivity.Idle:
			return 2
		case connectivity.TransientFailure:
			return 1
		}
		return 0
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// FromChild converts a child's endpoint and state.
func FromChild(ep gresolver.Endpoint, st gbalancer.State) Endpoint {
	e := Endpoint{State: st.ConnectivityState, Picker: st.Picker}
	if len(ep.Addresses) > 0 {
		e.Addr = ep.Addresses[0].Addr
	}
	if inst, ok := instance.FromEndpoint(ep); ok {
		e.Instance = inst
		e.Weight = uint32(inst.Weight)
	} else {
		e.Weight = weight.FromEndpoint(ep).Weight
	}
	if e.Weight == 0 {
		e.Weight, e.Unweighted = registry.DefaultWeight, true
	}
	return e
}
