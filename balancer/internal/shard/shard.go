// Package shard is the frame every Wayfinder policy is built on: grpc's
// endpointsharding with pick_first children, health listener enabled,
// exactly as grpc's own round_robin, plus a hook that turns the
// children's states into the policy's picker.
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

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/experimental/balancer/weight"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
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

	mu     sync.Mutex // guards policy and last; see the package doc for lock order
	policy Policy
	last   []Endpoint // the endpoints of the last update, for inspection

	unregister func() // removes the balancer from package inspect
}

// Describer is an optional interface of a Policy: it adds
// policy-specific statistics for an endpoint to the debug view. It is
// called with Balancer.mu held, never on the pick path.
type Describer interface {
	Describe(addr string) map[string]string
}

// New returns a balancer for cc running p.
func New(cc gbalancer.ClientConn, opts gbalancer.BuildOptions, p Policy) *Balancer {
	b := &Balancer{ClientConn: cc, policy: p}
	b.child = endpointsharding.NewBalancer(b, opts, gbalancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	b.unregister = inspect.Register(cc.Target(), policyName(p), b.describe)
	return b
}

// UpdateClientConnState implements balancer.Balancer.
func (b *Balancer) UpdateClientConnState(s gbalancer.ClientConnState) error {
	b.mu.Lock()
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

// ResolverError implements balancer.Balancer.
func (b *Balancer) ResolverError(err error) { b.child.ResolverError(err) }

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
func (b *Balancer) describe() []inspect.Endpoint {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, _ := b.policy.(Describer)
	out := make([]inspect.Endpoint, len(b.last))
	for i, e := range b.last {
		out[i] = inspect.Endpoint{Addr: e.Addr, Instance: e.Instance.ID, Zone: e.Instance.Zone, State: e.State.String(), Weight: e.Weight}
		if d != nil {
			out[i].Stats = d.Describe(e.Addr)
		}
	}
	return out
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
// while children connect and fails them when all are in failure.
func (b *Balancer) UpdateState(state gbalancer.State) {
	children := endpointsharding.ChildStatesFromPicker(state.Picker)
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
		b.policy.Picker(all, nil)
		b.mu.Unlock()
		b.ClientConn.UpdateState(state)
		return
	}
	ready := make([]Endpoint, 0, nready)
	for _, e := range all {
		if e.Ready() {
			ready = append(ready, e)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last = slices.Clone(all) // the policy owns all
	b.ClientConn.UpdateState(gbalancer.State{ConnectivityState: connectivity.Ready, Picker: b.policy.Picker(all, ready)})
}

// FromChild converts a child's endpoint and state.
func FromChild(ep gresolver.Endpoint, st gbalancer.State) Endpoint {
	e := Endpoint{State: st.ConnectivityState, Picker: st.Picker}
	if len(ep.Addresses) > 0 {
		e.Addr = ep.Addresses[0].Addr
	}
	if inst, ok := resolver.InstanceFromEndpoint(ep); ok {
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
