// Package shard is the frame every Wayfinder policy is built on: grpc's
// endpointsharding with pick_first children, health listener enabled,
// exactly as grpc's own round_robin, plus a hook that turns the
// children's states into the policy's picker.
//
// # Cost per change
//
// endpointsharding reports the state of every child at each change of
// any one of them, so a frame that read that list would cost O(endpoints)
// per SubConn event: with 5,000 endpoints connecting one by one, O(n²)
// to the first full picker. The frame instead wraps each pick_first
// child, sees the one update that changed, and keeps its own table of
// endpoints, updated in O(1) per event (Endpoints are immutable
// snapshots, replaced when they change, so pickers may keep them). The
// policy is asked for a picker only when what a picker sees changed: the
// endpoints, the ready set, a ready endpoint's picker or instance, the
// config or pick counting. Between those, the frame republishes its last
// picker. The policy's own build then costs what it makes of an Update.
//
// # Pick counting
//
// While inspect.CountPicks is in effect, the frame wraps each ready
// child's picker, as the policy receives it, in one that adds 1 to a
// counter kept per address across picker rebuilds, so every policy built
// on the frame counts picks without doing anything. The switch is read
// when a picker is published, so the pick path of a balancer that does
// not count is exactly the policy's own. A balancer nested in another
// Wayfinder policy (its ClientConn is a Parent) never counts: the parent
// counts the same calls.
//
// # Concurrency
//
// Balancer.mu guards the policy's state, the table of endpoints, and
// serialises picker builds. Lock order: endpointsharding's mutexes ->
// Balancer.mu (endpointsharding calls UpdateState and closes children
// while holding its own). Balancer.mu is never held while calling into
// endpointsharding or a child, so the order cannot invert.
package shard

import (
	"fmt"
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

// Endpoint is one child of the balancer as a picker sees it. The frame
// never changes an Endpoint it has handed to a policy: a change of state,
// picker or instance makes a new one with the same ID.
type Endpoint struct {
	// ID identifies the child for its lifetime, which lasts while its
	// endpoint (its set of addresses) stays in the resolver state: a key
	// for per-endpoint state that survives picker rebuilds.
	ID uint64
	// Addr is the endpoint's first address.
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
	// State and Picker are the pick_first child's (Picker wrapped to
	// count picks while counting).
	State  connectivity.State
	Picker gbalancer.Picker
	// Data is the policy's own per-endpoint value, carried to every
	// later snapshot of the same child. A policy sets it only on the
	// endpoints of Update.Added, in Picker, before any picker holds them.
	Data any
}

// Ready reports whether the endpoint can take calls.
func (e *Endpoint) Ready() bool { return e.State == connectivity.Ready }

// Update is what a policy builds a picker from. The frame owns its
// slices and reuses them after the call: a picker copies what it keeps
// (the Endpoints themselves it may keep).
type Update struct {
	// All is every endpoint, Ready the ready ones, each in an order that
	// changes as endpoints come, go and change state.
	All, Ready []*Endpoint
	// Added and Removed are the endpoints that joined and left All since
	// the last call (by ID; one that did both in between is in neither).
	// The first call has every endpoint in Added.
	Added, Removed []*Endpoint
	// Changed are the endpoints, neither added nor removed, whose Addr,
	// Instance or Weight changed since the last call.
	Changed []*Endpoint
}

// Policy is the part of a balancer that differs between policies.
type Policy interface {
	// SetConfig receives the parsed config of each ClientConn update,
	// before endpoints are updated. It may reject the config's type. The
	// next Picker call follows it.
	SetConfig(serviceconfig.LoadBalancingConfig) error
	// Picker returns the picker for u. It is called only when what a
	// picker sees changed since the last call (see the package doc).
	// When u.Ready is empty the result is ignored (endpointsharding's
	// picker queues or fails calls), but the call still lets the policy
	// drop state for endpoints that are gone. Calls are serialised.
	Picker(u *Update) gbalancer.Picker
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
	table       table
	counting    bool             // the snapshots' pickers count picks
	picker      gbalancer.Picker // the policy's last picker; nil if it had no ready endpoint
	picks       PickCounters     // by address, for endpoints in the table

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
	for addr := range c.byAddr {
		if !keep(addr) {
			c.Drop(addr)
		}
	}
}

// Drop drops addr's counter, as Retain does.
func (c *PickCounters) Drop(addr string) {
	if n := c.byAddr[addr]; n != nil {
		c.retired += n.Load()
		delete(c.byAddr, addr)
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
	Describe(e *Endpoint) map[string]string
}

// New returns a balancer for cc running p.
func New(cc gbalancer.ClientConn, opts gbalancer.BuildOptions, p Policy) *Balancer {
	return build(cc, opts, p, nil)
}

// build is New; spy, if set, sees every state endpointsharding reports,
// before the frame does (for tests).
func build(cc gbalancer.ClientConn, opts gbalancer.BuildOptions, p Policy, spy func(gbalancer.State)) *Balancer {
	b := &Balancer{ClientConn: cc, policy: p, parent: ParentID(cc)}
	b.table.init()
	var esCC gbalancer.ClientConn = b
	if spy != nil {
		esCC = &spyCC{Balancer: b, spy: spy}
	}
	pf := gbalancer.Get(pickfirst.Name)
	b.child = endpointsharding.NewBalancer(esCC, opts, func(cc gbalancer.ClientConn, opts gbalancer.BuildOptions) gbalancer.Balancer {
		c := &child{b: b}
		c.Balancer = pf.Build(&childCC{ClientConn: cc, c: c}, opts)
		return c
	}, endpointsharding.Options{})
	_, b.unregister = inspect.Register(opts.Target.String(), policyName(p), b.parent, b.describe)
	return b
}

// UpdateClientConnState implements balancer.Balancer.
func (b *Balancer) UpdateClientConnState(s gbalancer.ClientConnState) error {
	b.mu.Lock()
	b.resolverErr = nil
	err := b.policy.SetConfig(s.BalancerConfig)
	b.table.dirty = true // the config may change the picker
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

// describe reports the endpoints for package inspect.
func (b *Balancer) describe(ib *inspect.Balancer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, _ := b.policy.(Describer)
	ib.CountsPicks, ib.Picks = b.counting, b.picks.Total()
	out := make([]inspect.Endpoint, len(b.table.all))
	for i, e := range b.table.all {
		out[i] = inspect.Endpoint{Addr: e.Addr, Instance: e.Instance.ID, Zone: e.Instance.Zone, State: e.State.String(), Weight: e.Weight,
			Picks: b.picks.Get(e.Addr)}
		if d != nil {
			out[i].Stats = d.Describe(e)
		}
	}
	ib.Endpoints = out
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
// instead. It reads the table, not endpointsharding's list of children,
// so that it costs O(1) when nothing a picker sees changed.
func (b *Balancer) UpdateState(state gbalancer.State) {
	b.mu.Lock()
	if len(endpointsharding.ChildStatesFromPicker(state.Picker)) == 0 && b.resolverErr != nil {
		state = gbalancer.State{ConnectivityState: connectivity.TransientFailure, Picker: base.NewErrPicker(b.resolverErr)}
	}
	if counting := b.parent == 0 && inspect.CountingPicks(); counting != b.counting {
		b.counting = counting
		b.table.recount(b.wrapLocked)
	}
	if b.table.dirty {
		u := b.table.update()
		b.picker = b.policy.Picker(u)
		if len(u.Ready) == 0 {
			b.picker = nil
		}
	}
	if b.picker != nil {
		state = gbalancer.State{ConnectivityState: connectivity.Ready, Picker: b.picker}
	}
	b.mu.Unlock()
	b.ClientConn.UpdateState(state)
}

// wrapLocked returns p, wrapped to count picks on addr while counting.
func (b *Balancer) wrapLocked(addr string, p gbalancer.Picker) gbalancer.Picker {
	if !b.counting || p == nil {
		return p
	}
	return &CountingPicker{Picker: p, N: b.picks.Counter(addr)}
}

// spyCC is the Balancer as endpointsharding's ClientConn, with a spy.
type spyCC struct {
	*Balancer
	spy func(gbalancer.State)
}

func (c *spyCC) UpdateState(s gbalancer.State) {
	c.spy(s)
	c.Balancer.UpdateState(s)
}

// child wraps one pick_first child of endpointsharding, to keep the
// table as it changes.
type child struct {
	gbalancer.Balancer // pick_first
	b                  *Balancer
	e                  *entry // guarded by b.mu; nil until the first update
	closed             bool   // guarded by b.mu
}

// UpdateClientConnState implements balancer.Balancer: endpointsharding
// passes the child its endpoint.
func (c *child) UpdateClientConnState(s gbalancer.ClientConnState) error {
	if eps := s.ResolverState.Endpoints; len(eps) > 0 {
		b := c.b
		b.mu.Lock()
		if !c.closed {
			if c.e == nil {
				c.e = b.table.add(eps[0])
			} else {
				b.table.setEndpoint(c.e, eps[0], b.wrapLocked)
			}
		}
		b.mu.Unlock()
	}
	return c.Balancer.UpdateClientConnState(s)
}

// Close implements balancer.Balancer.
func (c *child) Close() {
	b := c.b
	b.mu.Lock()
	if !c.closed {
		c.closed = true
		if c.e != nil {
			b.table.remove(c.e)
			if !b.table.hasAddr(c.e.ep.Addr) {
				b.picks.Drop(c.e.ep.Addr)
			}
		}
	}
	b.mu.Unlock()
	c.Balancer.Close()
}

// childCC is a child's ClientConn: endpointsharding's, with UpdateState
// caught.
type childCC struct {
	gbalancer.ClientConn
	c *child
}

// UpdateState implements balancer.ClientConn.
func (cc *childCC) UpdateState(s gbalancer.State) {
	c, b := cc.c, cc.c.b
	b.mu.Lock()
	if !c.closed && c.e != nil {
		b.table.setState(c.e, s, b.wrapLocked)
	}
	b.mu.Unlock()
	cc.ClientConn.UpdateState(s)
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
