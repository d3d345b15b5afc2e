package zone

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	_ "google.golang.org/grpc/balancer/roundrobin" // the default child
	"google.golang.org/grpc/connectivity"
	gresolver "google.golang.org/grpc/resolver"

	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/lbconfig"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/subconn"
)

func init() {
	gbalancer.Register(lbconfig.Builder[*Config]{Policy: Name, Parse: ParseConfig, New: newBalancer})
}

func newBalancer(cc gbalancer.ClientConn, opts gbalancer.BuildOptions, cfg *Config) gbalancer.Balancer {
	b := &balancer{cc: cc, opts: opts, cfg: cfg, zones: map[string]*zoneChild{}, parent: shard.ParentID(cc)}
	b.id, b.unregister = inspect.Register(opts.Target.String(), "zone", b.parent, b.describe)
	return b
}

// balancer runs one child policy per zone, each on its own ClientConn
// wrapper that receives only that zone's endpoints, and chooses the zone
// for each call.
//
// # Locking
//
// gRPC serialises every call into the balancer, including SubConn state
// and health listeners, so the children are only ever called from one
// goroutine at a time, and never with mu held: a child calls back into
// UpdateState and NewSubConn synchronously, and those take mu. mu guards
// the zones' state and the config; it is held while sending a picker to
// gRPC, so pickers arrive in order.
type balancer struct {
	cc   gbalancer.ClientConn
	opts gbalancer.BuildOptions

	mu      sync.Mutex
	cfg     *Config
	zones   map[string]*zoneChild
	inhibit bool // inside UpdateClientConnState: one picker at its end
	dirty   bool // capacity changed since the last picker
	closed  bool

	id         uint64             // in package inspect
	parent     uint64             // inspect ID of the Wayfinder policy above, if any: do not count picks
	countPicks bool               // the last picker counts picks
	picks      shard.PickCounters // by address

	unregister func() // removes the balancer from package inspect
}

// zoneChild is one zone's child policy and what the balancer knows of
// its endpoints. Fields but name and bal are guarded by balancer.mu.
type zoneChild struct {
	name string
	bal  gbalancer.Balancer // called only from gRPC's serialised calls

	state   gbalancer.State
	byAddr  map[string]*endpoint // every address of the zone's endpoints
	total   uint64               // sum of the endpoints' weights
	healthy uint64               // sum of the healthy endpoints' weights
	closed  bool
}

// endpoint is guarded by balancer.mu but for picks.
type endpoint struct {
	zone     *zoneChild
	addr, id string // first address, registry instance ID
	weight   uint64
	ready    int  // READY and healthy SubConns
	live     bool // still in the zone's resolver state
	subConns []*subConn
	picks    *atomic.Uint64 // added to by pickers that count
}

func (b *balancer) UpdateClientConnState(s gbalancer.ClientConnState) error {
	cfg, ok := s.BalancerConfig.(*Config)
	if !ok {
		cfg, _ = ParseConfig(nil)
	}
	byZone := map[string][]gresolver.Endpoint{}
	for _, ep := range s.ResolverState.Endpoints {
		z := shard.FromChild(ep, gbalancer.State{}).Instance.Zone
		byZone[z] = append(byZone[z], ep)
	}

	b.mu.Lock()
	var closing []gbalancer.Balancer
	sameChild := b.cfg.Child.Name() == cfg.Child.Name()
	for name, z := range b.zones {
		if _, ok := byZone[name]; !ok || !sameChild {
			z.closed = true
			closing = append(closing, z.bal)
			delete(b.zones, name)
		}
	}
	b.cfg = cfg
	b.inhibit = true
	var building []*zoneChild
	for name, eps := range byZone {
		z := b.zones[name]
		if z == nil {
			z = &zoneChild{name: name}
			b.zones[name] = z
			building = append(building, z)
		}
		old := z.byAddr
		z.total, z.healthy = 0, 0
		z.byAddr, _ = subconn.Index(eps, old, func(addr string) *endpoint {
			return &endpoint{zone: z, addr: addr, live: true, picks: b.picks.Counter(addr)}
		}, func(e *endpoint, rep gresolver.Endpoint) {
			se := shard.FromChild(rep, gbalancer.State{})
			e.weight, e.id = uint64(se.Weight), se.Instance.ID
			z.total += e.weight
			if e.ready > 0 {
				z.healthy += e.weight
			}
		})
		for addr, e := range old {
			if z.byAddr[addr] != e {
				e.live = false
			}
		}
	}
	b.picks.Retain(func(addr string) bool {
		for _, z := range b.zones {
			if e := z.byAddr[addr]; e != nil && e.addr == addr {
				return true
			}
		}
		return false
	})
	b.mu.Unlock()

	for _, c := range closing {
		c.Close()
	}
	for _, z := range building {
		bal := cfg.Child.Builder.Build(newChildCC(b, z), b.opts)
		b.mu.Lock()
		z.bal = bal
		b.mu.Unlock()
	}
	var errs []error
	for name, eps := range byZone {
		b.mu.Lock()
		bal := b.zones[name].bal
		b.mu.Unlock()
		err := bal.UpdateClientConnState(gbalancer.ClientConnState{
			ResolverState: gresolver.State{
				Endpoints:     eps,
				Attributes:    s.ResolverState.Attributes,
				ServiceConfig: s.ResolverState.ServiceConfig,
			},
			BalancerConfig: cfg.Child.Config,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("zone %q: %w", name, err))
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	b.inhibit = false
	if len(byZone) == 0 {
		err := fmt.Errorf("%s: the resolver gave no endpoints", Name)
		b.cc.UpdateState(gbalancer.State{ConnectivityState: connectivity.TransientFailure, Picker: base.NewErrPicker(err)})
		return gbalancer.ErrBadResolverState
	}
	b.updateLocked()
	return errors.Join(errs...)
}

func (b *balancer) children() []gbalancer.Balancer {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]gbalancer.Balancer, 0, len(b.zones))
	for _, z := range b.zones {
		out = append(out, z.bal)
	}
	return out
}

func (b *balancer) ResolverError(err error) {
	cs := b.children()
	if len(cs) == 0 {
		b.cc.UpdateState(gbalancer.State{ConnectivityState: connectivity.TransientFailure,
			Picker: base.NewErrPicker(fmt.Errorf("%s: resolver: %w", Name, err))})
		return
	}
	for _, c := range cs {
		c.ResolverError(err)
	}
}

// UpdateSubConnState is never called: SubConns have state listeners.
func (b *balancer) UpdateSubConnState(gbalancer.SubConn, gbalancer.SubConnState) {}

func (b *balancer) ExitIdle() {
	for _, c := range b.children() {
		c.ExitIdle()
	}
}

func (b *balancer) Close() {
	b.unregister()
	cs := b.children()
	b.mu.Lock()
	b.closed = true
	for _, z := range b.zones {
		z.closed = true
	}
	b.zones = map[string]*zoneChild{}
	b.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}
