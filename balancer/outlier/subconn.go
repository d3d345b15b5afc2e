package outlier

import (
	"sync/atomic"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
	gresolver "google.golang.org/grpc/resolver"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/subconn"
)

// childCC is the child's ClientConn: the shared frame, which wraps the
// SubConns the child creates, to find the endpoint of a picked SubConn
// and to stand between grpc's health listener and the child's, with
// UpdateState caught. Pickers unwrap the SubConns before grpc sees them.
type childCC struct {
	*subconn.ClientConn[scInfo]
	b *balancer
}

// subConn is a SubConn of the child.
type subConn = subconn.SubConn[scInfo]

// scInfo is the balancer's record of one SubConn.
type scInfo struct {
	ep  *endpoint // nil for an address not in the resolver state; set at creation
	gen int       // the child generation that made it

	// Guarded by balancer.childMu.
	health     func(gbalancer.SubConnState) // the child's live health listener
	lastHealth gbalancer.SubConnState       // last real health, for unejection
	ejected    bool

	state atomic.Int32 // connectivity.State, health included, for package inspect
}

func newChildCC(b *balancer) *childCC {
	return &childCC{b: b, ClientConn: &subconn.ClientConn[scInfo]{
		ClientConn: b.cc,
		Hooks: subconn.Hooks[scInfo]{
			// Inside childMu: the child is calling NewSubConn.
			Created: func(sc *subConn, addrs []gresolver.Address) {
				sc.Data.gen = b.childGen
				sc.Data.lastHealth = gbalancer.SubConnState{ConnectivityState: connectivity.Connecting}
				sc.Data.state.Store(int32(connectivity.Idle))
				if len(addrs) == 0 {
					return
				}
				b.mu.Lock()
				defer b.mu.Unlock()
				if ep := b.byAddr[addrs[0].Addr]; ep != nil {
					sc.Data.ep = ep
					ep.subConns = append(ep.subConns, sc)
					sc.Data.ejected = !ep.ejectedAt.IsZero()
				}
			},
			// Updates for a closed balancer or a replaced child are
			// dropped.
			Deliver: func(sc *subConn, f func()) {
				b.childMu.Lock()
				defer b.childMu.Unlock()
				if b.closed || sc.Data.gen != b.childGen {
					return
				}
				f()
			},
			State: func(sc *subConn, s gbalancer.SubConnState) {
				if s.ConnectivityState != connectivity.Ready {
					sc.Data.health = nil // a health listener lives while READY
				}
				sc.Data.state.Store(int32(s.ConnectivityState))
				if s.ConnectivityState == connectivity.Shutdown && sc.Data.ep != nil {
					b.mu.Lock()
					sc.Data.ep.subConns = deleteSubConn(sc.Data.ep.subConns, sc)
					b.mu.Unlock()
				}
			},
			// Inside childMu: pick_first registers from inside a call.
			HealthRegistered: func(sc *subConn, l func(gbalancer.SubConnState)) {
				sc.Data.health = l
			},
			Health: func(sc *subConn, s gbalancer.SubConnState) bool {
				sc.Data.lastHealth = s
				sc.Data.state.Store(int32(s.ConnectivityState))
				return !sc.Data.ejected // an ejected endpoint stays TRANSIENT_FAILURE
			},
		},
	}}
}

// WayfinderParent implements shard.Parent: a Wayfinder policy below this
// one does not count picks, as this one does.
func (c *childCC) WayfinderParent() uint64 { return c.b.id }

// UpdateState implements balancer.ClientConn for the child.
func (c *childCC) UpdateState(s gbalancer.State) {
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.childState = s
	b.sendPickerLocked()
}

func deleteSubConn(s []*subConn, sc *subConn) []*subConn {
	for i, x := range s {
		if x == sc {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}

// setEjected tells the child about an ejection or a return; inside
// childMu.
func (b *balancer) setEjected(sc *subConn, ej bool) {
	d := &sc.Data
	if d.ejected == ej || d.gen != b.childGen {
		return
	}
	d.ejected = ej
	if d.health == nil {
		return
	}
	if ej {
		d.health(gbalancer.SubConnState{ConnectivityState: connectivity.TransientFailure, ConnectionError: ErrEjected})
	} else {
		d.health(d.lastHealth)
	}
}
