// Package subconn is the frame of a policy that wraps another: the
// ClientConn its child policy gets, which wraps every SubConn the child
// makes so the parent sees the SubConn's connectivity and health, and
// unwraps them again on the way back to gRPC. The zone-aware and outlier
// ejection policies are built on it; each says only what it does with
// an update, in Hooks.
//
// The frame keeps health-listener generations: a health listener lives
// from its registration until the next registration or until the SubConn
// leaves READY, and updates for a listener that no longer lives are
// dropped, for the parent and the child alike.
//
// # Concurrency
//
// gRPC serialises its calls into the balancer, listeners included, and
// calls no listener from inside NewSubConn; the frame relies on both and
// adds no lock of its own but an atomic generation. Hooks.Deliver runs
// every update the frame passes on, so a parent can take its locks
// around the hooks and the child's listener together.
package subconn

import (
	"sync/atomic"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
	gresolver "google.golang.org/grpc/resolver"
)

// Hooks is what a parent policy does with its child's SubConns. T is the
// parent's record of one SubConn. Every hook may be nil.
type Hooks[T any] struct {
	// Created is called from NewSubConn once the parent's ClientConn has
	// made sc, before the child sees it: the place to find sc's endpoint
	// (Index) and fill sc.Data.
	Created func(sc *SubConn[T], addrs []gresolver.Address)
	// Deliver runs f, which passes one update to the hooks below and to
	// the child, for sc. It may take locks around f, run code after it,
	// or drop the update by not calling f. Default: f().
	Deliver func(sc *SubConn[T], f func())
	// State sees each connectivity update before the child's listener.
	State func(sc *SubConn[T], s gbalancer.SubConnState)
	// HealthRegistered sees the child register a health listener l, or
	// none (l nil), before the frame registers its own in its place.
	HealthRegistered func(sc *SubConn[T], l func(gbalancer.SubConnState))
	// Health sees each update for the live health listener and returns
	// whether the child's listener gets it. Default: it does.
	Health func(sc *SubConn[T], s gbalancer.SubConnState) bool
}

// ClientConn is the ClientConn a child policy gets: the parent's
// ClientConn, with SubConns wrapped. Embed it to override UpdateState.
type ClientConn[T any] struct {
	gbalancer.ClientConn // the parent's
	Hooks                Hooks[T]
}

// SubConn wraps a SubConn the child made; the child holds it, gRPC never
// does (Unwrap).
type SubConn[T any] struct {
	gbalancer.SubConn // the parent's
	// Data is the parent's record of the SubConn, guarded as the parent
	// says.
	Data T

	hooks *Hooks[T]
	// healthGen names the live health listener; bumped when the child
	// registers one and when the SubConn leaves READY.
	healthGen atomic.Uint64
}

// NewSubConn implements balancer.ClientConn.
func (c *ClientConn[T]) NewSubConn(addrs []gresolver.Address, opts gbalancer.NewSubConnOptions) (gbalancer.SubConn, error) {
	sc := &SubConn[T]{hooks: &c.Hooks}
	listener := opts.StateListener
	opts.StateListener = func(s gbalancer.SubConnState) {
		sc.deliver(func() {
			if s.ConnectivityState != connectivity.Ready {
				sc.healthGen.Add(1) // a health listener lives while READY
			}
			if h := sc.hooks.State; h != nil {
				h(sc, s)
			}
			if listener != nil {
				listener(s)
			}
		})
	}
	//lint:ignore SA1019 NewSubConn is the only way to make a SubConn; the deprecation warns of one address per SubConn, which the frame passes on as the child gives them.
	real, err := c.ClientConn.NewSubConn(addrs, opts)
	if err != nil {
		return nil, err
	}
	sc.SubConn = real
	if h := c.Hooks.Created; h != nil {
		h(sc, addrs)
	}
	return sc, nil
}

// UpdateAddresses implements the deprecated balancer.ClientConn method.
// No child in this tree calls it, but while the interface has it, it must
// reach the parent's ClientConn (which may be another wrapper) with the
// parent's SubConn, not the wrapper the parent does not know.
func (c *ClientConn[T]) UpdateAddresses(sc gbalancer.SubConn, addrs []gresolver.Address) {
	//lint:ignore SA1019 forwarding a method the interface still requires; see above.
	c.ClientConn.UpdateAddresses(Unwrap[T](sc), addrs)
}

// RemoveSubConn implements the deprecated balancer.ClientConn method, as
// UpdateAddresses does.
func (c *ClientConn[T]) RemoveSubConn(sc gbalancer.SubConn) {
	//lint:ignore SA1019 forwarding a method the interface still requires; see UpdateAddresses.
	c.ClientConn.RemoveSubConn(Unwrap[T](sc))
}

// Unwrap returns the parent's SubConn for sc if the frame wrapped it,
// else sc; pickers pass what it returns to gRPC.
func Unwrap[T any](sc gbalancer.SubConn) gbalancer.SubConn {
	if w, ok := sc.(*SubConn[T]); ok {
		return w.SubConn
	}
	return sc
}

func (sc *SubConn[T]) deliver(f func()) {
	if d := sc.hooks.Deliver; d != nil {
		d(sc, f)
		return
	}
	f()
}

// RegisterHealthListener is called by the child (pick_first).
func (sc *SubConn[T]) RegisterHealthListener(l func(gbalancer.SubConnState)) {
	gen := sc.healthGen.Add(1)
	if h := sc.hooks.HealthRegistered; h != nil {
		h(sc, l)
	}
	if l == nil {
		sc.SubConn.RegisterHealthListener(nil)
		return
	}
	sc.SubConn.RegisterHealthListener(func(s gbalancer.SubConnState) {
		sc.deliver(func() {
			if sc.healthGen.Load() != gen {
				return
			}
			if h := sc.hooks.Health; h != nil && !h(sc, s) {
				return
			}
			l(s)
		})
	})
}

// Index maps every address of eps to the parent's record of its
// endpoint, the first endpoint to list an address winning, and returns
// the distinct records in resolver order. An endpoint without addresses,
// or whose first address an earlier one has, is skipped. A record is
// kept from old by first address, else made with newE(first address);
// update then sees it with its endpoint.
func Index[E any](eps []gresolver.Endpoint, old map[string]*E, newE func(addr string) *E, update func(e *E, ep gresolver.Endpoint)) (map[string]*E, []*E) {
	byAddr := map[string]*E{}
	out := []*E{}
	for _, ep := range eps {
		if len(ep.Addresses) == 0 || byAddr[ep.Addresses[0].Addr] != nil {
			continue
		}
		addr := ep.Addresses[0].Addr
		e := old[addr]
		if e == nil {
			e = newE(addr)
		}
		if update != nil {
			update(e, ep)
		}
		out = append(out, e)
		for _, a := range ep.Addresses {
			if byAddr[a.Addr] == nil {
				byAddr[a.Addr] = e
			}
		}
	}
	return byAddr, out
}
