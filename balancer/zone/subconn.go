package zone

import (
	"slices"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
	gresolver "google.golang.org/grpc/resolver"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/subconn"
)

// childCC is the ClientConn of one zone's child: the shared frame, which
// wraps SubConns to follow their health (it decides the zone's healthy
// capacity), with UpdateState caught. Pickers unwrap the SubConns before
// gRPC sees them.
type childCC struct {
	*subconn.ClientConn[scInfo]
	b *balancer
	z *zoneChild
}

// subConn is a SubConn of a zone's child.
type subConn = subconn.SubConn[scInfo]

// scInfo follows one SubConn's connectivity and health; guarded by
// balancer.mu.
type scInfo struct {
	ep      *endpoint // nil for an address not in the resolver state
	raw     connectivity.State
	watched bool // a health listener is registered
	health  connectivity.State
	counted bool // counted in ep.ready
}

func newChildCC(b *balancer, z *zoneChild) *childCC {
	return &childCC{b: b, z: z, ClientConn: &subconn.ClientConn[scInfo]{
		ClientConn: b.cc,
		Hooks: subconn.Hooks[scInfo]{
			Created: func(sc *subConn, addrs []gresolver.Address) {
				if len(addrs) == 0 {
					return
				}
				b.mu.Lock()
				defer b.mu.Unlock()
				if sc.Data.ep = z.byAddr[addrs[0].Addr]; sc.Data.ep != nil {
					sc.Data.ep.subConns = append(sc.Data.ep.subConns, sc)
				}
			},
			// The child's listener runs unlocked: it calls UpdateState,
			// which takes mu. Capacity changes the child did not follow
			// with a picker of its own are sent after it.
			Deliver: func(_ *subConn, f func()) {
				f()
				b.flush()
			},
			State: func(sc *subConn, s gbalancer.SubConnState) {
				b.mu.Lock()
				defer b.mu.Unlock()
				sc.Data.raw = s.ConnectivityState
				if s.ConnectivityState != connectivity.Ready {
					sc.Data.watched = false // a health listener lives while READY
				}
				b.recountLocked(sc)
				if s.ConnectivityState == connectivity.Shutdown && sc.Data.ep != nil {
					sc.Data.ep.subConns = slices.DeleteFunc(sc.Data.ep.subConns, func(x *subConn) bool { return x == sc })
				}
			},
			HealthRegistered: func(sc *subConn, l func(gbalancer.SubConnState)) {
				b.mu.Lock()
				defer b.mu.Unlock()
				sc.Data.watched = l != nil
				sc.Data.health = connectivity.Connecting
				b.recountLocked(sc)
			},
			Health: func(sc *subConn, s gbalancer.SubConnState) bool {
				b.mu.Lock()
				defer b.mu.Unlock()
				sc.Data.health = s.ConnectivityState
				b.recountLocked(sc)
				return true
			},
		},
	}}
}

// WayfinderParent implements shard.Parent: a Wayfinder policy in a zone
// does not count picks, as the zone-aware policy does.
func (c *childCC) WayfinderParent() uint64 { return c.b.id }

func (c *childCC) UpdateState(s gbalancer.State) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	if c.z.closed {
		return
	}
	c.z.state = s
	c.b.updateLocked()
}

// recountLocked counts sc in its endpoint's READY SubConns, or stops.
func (b *balancer) recountLocked(sc *subConn) {
	d := &sc.Data
	ready := d.raw == connectivity.Ready && (!d.watched || d.health == connectivity.Ready)
	if ready == d.counted || d.ep == nil {
		return
	}
	d.counted = ready
	if ready {
		d.ep.addReady(1)
	} else {
		d.ep.addReady(-1)
	}
	b.dirty = true
}

func (e *endpoint) addReady(d int) {
	was := e.ready > 0
	e.ready += d
	if now := e.ready > 0; now != was && e.live {
		if now {
			e.zone.healthy += e.weight
		} else {
			e.zone.healthy -= e.weight
		}
	}
}

// flush sends a picker if capacity changed and the child did not send
// one of its own.
func (b *balancer) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dirty {
		b.updateLocked()
	}
}
