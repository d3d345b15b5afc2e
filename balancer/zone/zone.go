package zone

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	_ "google.golang.org/grpc/balancer/roundrobin" // the default child
	"google.golang.org/grpc/connectivity"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/lbconfig"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
)

// Name is the policy's registered name.
const Name = "wayfinder_zone_aware"

// EnvZone is the environment variable that gives the local zone when the
// config sets none; the same variable app.Config reads for the zone a
// server registers in.
const EnvZone = "WAYFINDER_ZONE"

// Defaults.
const (
	DefaultMinLocalShare = 0.7
	DefaultChild         = "round_robin"
)

func init() { gbalancer.Register(builder{}) }

// Config is the policy's service-config JSON.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// LocalZone is the client's zone. Default: the WAYFINDER_ZONE
	// environment variable when ParseConfig runs; if both are empty
	// there is no local zone (see the package doc).
	LocalZone string `json:"localZone"`
	// MinLocalShare is the fraction of a zone's capacity that must be
	// healthy for the zone to take all the calls it is offered; below
	// it, the zone takes a proportional part and the rest spills over
	// to the next zones. Default 0.7; range (0, 1].
	MinLocalShare float64 `json:"minLocalShare"`
	// FailoverOrder lists the zones to spill over and fail over to, in
	// order, after the local zone; the local zone is skipped if listed,
	// so one list can serve every zone. Zones not listed come last,
	// together.
	FailoverOrder []string `json:"failoverOrder"`
	// Child is the policy run inside each zone, as a loadBalancingConfig
	// list. Default [{"round_robin":{}}].
	Child lbconfig.Child `json:"child"`
}

// ParseConfig parses and validates js, applying defaults.
func ParseConfig(js json.RawMessage) (*Config, error) {
	cfg := &Config{MinLocalShare: DefaultMinLocalShare, Child: lbconfig.DefaultChild(DefaultChild)}
	if err := lbconfig.Decode(Name, js, cfg); err != nil {
		return nil, err
	}
	if cfg.LocalZone == "" {
		cfg.LocalZone = os.Getenv(EnvZone)
	}
	if m := cfg.MinLocalShare; !(m > 0 && m <= 1) {
		return nil, lbconfig.Invalid(Name, "minLocalShare", "%v is out of range (0, 1]", m)
	}
	for i, z := range cfg.FailoverOrder {
		if z == "" {
			return nil, lbconfig.Invalid(Name, "failoverOrder", "entry %d is empty", i)
		}
		if slices.Contains(cfg.FailoverOrder[:i], z) {
			return nil, lbconfig.Invalid(Name, "failoverOrder", "zone %q is listed twice", z)
		}
	}
	if cfg.Child.Builder == nil {
		return nil, lbconfig.Invalid(Name, "child", "no policy")
	}
	return cfg, nil
}

type builder struct{}

func (builder) Name() string { return Name }

func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return ParseConfig(js)
}

func (builder) Build(cc gbalancer.ClientConn, opts gbalancer.BuildOptions) gbalancer.Balancer {
	cfg, _ := ParseConfig(nil)
	b := &balancer{cc: cc, opts: opts, cfg: cfg, zones: map[string]*zoneChild{}, parent: shard.ParentID(cc)}
	b.id, b.unregister = inspect.Register(cc.Target(), "zone", b.parent, b.describe)
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
		z.byAddr = make(map[string]*endpoint, len(eps))
		z.total, z.healthy = 0, 0
		for _, rep := range eps {
			if len(rep.Addresses) == 0 || z.byAddr[rep.Addresses[0].Addr] != nil {
				continue
			}
			addr := rep.Addresses[0].Addr
			e := old[addr]
			if e == nil {
				e = &endpoint{zone: z, addr: addr, live: true, picks: b.picks.Counter(addr)}
			}
			se := shard.FromChild(rep, gbalancer.State{})
			e.weight, e.id = uint64(se.Weight), se.Instance.ID
			z.total += e.weight
			if e.ready > 0 {
				z.healthy += e.weight
			}
			for _, a := range rep.Addresses {
				if z.byAddr[a.Addr] == nil {
					z.byAddr[a.Addr] = e
				}
			}
		}
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
		bal := cfg.Child.Builder.Build(&childCC{ClientConn: b.cc, b: b, z: z}, b.opts)
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

// childCC is the ClientConn of one zone's child.
type childCC struct {
	gbalancer.ClientConn
	b *balancer
	z *zoneChild
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

// NewSubConn wraps the SubConn to follow its health, which decides the
// zone's healthy capacity. Pickers unwrap it before gRPC sees it.
func (c *childCC) NewSubConn(addrs []gresolver.Address, opts gbalancer.NewSubConnOptions) (gbalancer.SubConn, error) {
	b := c.b
	sc := &subConn{b: b}
	listener := opts.StateListener
	opts.StateListener = func(s gbalancer.SubConnState) {
		b.mu.Lock()
		sc.raw = s.ConnectivityState
		if sc.raw != connectivity.Ready {
			sc.healthGen++ // a health listener lives while READY
			sc.watched = false
		}
		sc.recountLocked()
		if s.ConnectivityState == connectivity.Shutdown && sc.ep != nil {
			sc.ep.subConns = slices.DeleteFunc(sc.ep.subConns, func(x *subConn) bool { return x == sc })
		}
		b.mu.Unlock()
		if listener != nil {
			listener(s)
		}
		b.flush()
	}
	real, err := c.ClientConn.NewSubConn(addrs, opts)
	if err != nil {
		return nil, err
	}
	sc.SubConn = real
	if len(addrs) > 0 {
		b.mu.Lock()
		if sc.ep = c.z.byAddr[addrs[0].Addr]; sc.ep != nil {
			sc.ep.subConns = append(sc.ep.subConns, sc)
		}
		b.mu.Unlock()
	}
	return sc, nil
}

// UpdateAddresses implements the deprecated balancer.ClientConn method.
func (c *childCC) UpdateAddresses(sc gbalancer.SubConn, addrs []gresolver.Address) {
	if w, ok := sc.(*subConn); ok {
		sc = w.SubConn
	}
	c.ClientConn.UpdateAddresses(sc, addrs)
}

// RemoveSubConn implements the deprecated balancer.ClientConn method.
func (c *childCC) RemoveSubConn(sc gbalancer.SubConn) {
	if w, ok := sc.(*subConn); ok {
		sc = w.SubConn
	}
	c.ClientConn.RemoveSubConn(sc)
}

// subConn follows one SubConn's connectivity and health. Fields but
// SubConn and b are guarded by balancer.mu.
type subConn struct {
	gbalancer.SubConn
	b *balancer

	ep        *endpoint // nil for an address not in the resolver state
	raw       connectivity.State
	watched   bool // a health listener is registered
	health    connectivity.State
	healthGen int
	counted   bool // counted in ep.ready
}

func (sc *subConn) recountLocked() {
	ready := sc.raw == connectivity.Ready && (!sc.watched || sc.health == connectivity.Ready)
	if ready == sc.counted || sc.ep == nil {
		return
	}
	sc.counted = ready
	if ready {
		sc.ep.addReady(1)
	} else {
		sc.ep.addReady(-1)
	}
	sc.b.dirty = true
}

// RegisterHealthListener is called by the child's pick_first.
func (sc *subConn) RegisterHealthListener(l func(gbalancer.SubConnState)) {
	b := sc.b
	b.mu.Lock()
	sc.healthGen++
	gen := sc.healthGen
	sc.watched = l != nil
	sc.health = connectivity.Connecting
	sc.recountLocked()
	b.mu.Unlock()
	if l == nil {
		sc.SubConn.RegisterHealthListener(nil)
		return
	}
	sc.SubConn.RegisterHealthListener(func(s gbalancer.SubConnState) {
		b.mu.Lock()
		if sc.healthGen == gen {
			sc.health = s.ConnectivityState
			sc.recountLocked()
		}
		b.mu.Unlock()
		l(s)
		b.flush()
	})
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

// updateLocked sends gRPC a picker for the zones' current states.
func (b *balancer) updateLocked() {
	if b.inhibit || b.closed {
		return
	}
	b.dirty = false
	b.countPicks = b.parent == 0 && inspect.CountingPicks()
	targets, weights := b.plan()
	if len(targets) > 0 {
		p := &picker{pickers: make([]gbalancer.Picker, len(targets)), cum: make([]uint64, len(targets)), count: b.countPicks}
		sum := 0.0
		for _, w := range weights {
			sum += w
		}
		acc := 0.0
		for i, z := range targets {
			p.pickers[i] = z.state.Picker
			acc += weights[i]
			p.cum[i] = uint64(math.Min(acc/sum*(1<<63), 1<<63-1)) << 1
		}
		p.cum[len(p.cum)-1] = math.MaxUint64
		b.cc.UpdateState(gbalancer.State{ConnectivityState: connectivity.Ready, Picker: p})
		return
	}
	// No zone can take calls: wait while any connects, else fail with the
	// error of the zone that would be tried first.
	var first *zoneChild
	for _, level := range b.levels() {
		for _, z := range level {
			switch z.state.ConnectivityState {
			case connectivity.Connecting, connectivity.Idle:
				b.cc.UpdateState(gbalancer.State{ConnectivityState: connectivity.Connecting, Picker: base.NewErrPicker(gbalancer.ErrNoSubConnAvailable)})
				return
			}
			if first == nil && z.state.Picker != nil {
				first = z
			}
		}
	}
	if first == nil {
		b.cc.UpdateState(gbalancer.State{ConnectivityState: connectivity.Connecting, Picker: base.NewErrPicker(gbalancer.ErrNoSubConnAvailable)})
		return
	}
	b.cc.UpdateState(gbalancer.State{ConnectivityState: first.state.ConnectivityState, Picker: &picker{pickers: []gbalancer.Picker{first.state.Picker}, cum: []uint64{math.MaxUint64}, count: b.countPicks}})
}

// levels returns the zones in the order they are tried: the local zone,
// the failover order, then every other zone together.
func (b *balancer) levels() [][]*zoneChild {
	var out [][]*zoneChild
	seen := map[string]bool{}
	add := func(name string) {
		if z := b.zones[name]; z != nil && !seen[name] {
			seen[name] = true
			out = append(out, []*zoneChild{z})
		}
	}
	if b.cfg.LocalZone != "" {
		add(b.cfg.LocalZone)
	}
	for _, name := range b.cfg.FailoverOrder {
		add(name)
	}
	var rest []*zoneChild
	for name, z := range b.zones {
		if !seen[name] {
			rest = append(rest, z)
		}
	}
	slices.SortFunc(rest, func(a, b *zoneChild) int {
		if a.name < b.name {
			return -1
		}
		if a.name > b.name {
			return 1
		}
		return 0
	})
	if len(rest) > 0 {
		out = append(out, rest)
	}
	return out
}

// healthy returns the zone's healthy capacity, trusting its child's
// state where the two disagree: a child that is not READY takes no
// calls; one that is READY without a healthy SubConn that the balancer
// saw (a child without health listeners) is taken at full capacity.
func (z *zoneChild) healthyCapacity() uint64 {
	if z.state.ConnectivityState != connectivity.Ready || z.state.Picker == nil {
		return 0
	}
	if z.healthy == 0 {
		return z.total
	}
	return z.healthy
}

// plan returns the zones that take calls and their shares. Each level,
// in order, takes min(1, h/minLocalShare) of the calls the levels before
// it left, where h is the level's healthy fraction of its capacity;
// inside a level, zones share by healthy capacity. When every level is
// degraded, the shares are scaled up to sum to 1.
func (b *balancer) plan() ([]*zoneChild, []float64) {
	var zs []*zoneChild
	var ws []float64
	left := 1.0
	for _, level := range b.levels() {
		var total, healthy uint64
		for _, z := range level {
			total += z.total
			healthy += z.healthyCapacity()
		}
		if healthy == 0 || total == 0 || left <= 0 {
			continue
		}
		share := left * math.Min(1, float64(healthy)/float64(total)/b.cfg.MinLocalShare)
		left -= share
		for _, z := range level {
			if h := z.healthyCapacity(); h > 0 {
				zs = append(zs, z)
				ws = append(ws, share*float64(h)/float64(healthy))
			}
		}
	}
	return zs, ws
}

// picker chooses a zone at random by share and delegates to its child.
type picker struct {
	pickers []gbalancer.Picker
	cum     []uint64 // cumulative shares scaled to 2^64; the last is MaxUint64
	count   bool     // count picks per endpoint
}

func (p *picker) Pick(info gbalancer.PickInfo) (gbalancer.PickResult, error) {
	i := 0
	if len(p.cum) > 1 {
		r := rand.Uint64()
		for r > p.cum[i] {
			i++
		}
	}
	res, err := p.pickers[i].Pick(info)
	if sc, ok := res.SubConn.(*subConn); ok {
		res.SubConn = sc.SubConn
		if p.count && err == nil && sc.ep != nil {
			sc.ep.picks.Add(1)
		}
	}
	return res, err
}

// describe reports, for package inspect, the local zone, the order zones
// are tried in, each zone's healthy capacity and share of calls, whether
// calls stay local, spill over or fail over, and every endpoint with its
// zone and state.
func (b *balancer) describe(ib *inspect.Balancer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ib.CountsPicks, ib.Picks = b.countPicks, b.picks.Total()
	label := func(zone string) string {
		if zone == "" {
			return "(none)"
		}
		return zone
	}
	targets, weights := b.plan()
	sum := 0.0
	for _, w := range weights {
		sum += w
	}
	share := map[string]float64{}
	for i, z := range targets {
		share[z.name] = weights[i] / sum
	}
	stats := map[string]string{"local_zone": label(b.cfg.LocalZone)}
	if b.cfg.LocalZone == "" {
		stats["local_zone"] = "(not set)"
	}
	var order []string
	for _, level := range b.levels() {
		names := make([]string, len(level))
		for i, z := range level {
			names[i] = label(z.name)
			stats["share."+label(z.name)] = strconv.FormatFloat(100*share[z.name], 'f', 1, 64) + "%"
			stats["healthy."+label(z.name)] = fmt.Sprintf("%d/%d", z.healthyCapacity(), z.total)
		}
		order = append(order, strings.Join(names, "+"))
	}
	stats["order"] = strings.Join(order, " > ")
	_, hasLocal := b.zones[b.cfg.LocalZone]
	switch local := share[b.cfg.LocalZone]; {
	case len(targets) == 0:
		stats["mode"] = "no zone ready"
	case b.cfg.LocalZone == "":
		stats["mode"] = "spread" // no local zone: by failover order and healthy capacity
	case !hasLocal:
		stats["mode"] = "failover" // the local zone has no endpoints
	case local >= 1:
		stats["mode"] = "local"
	case local > 0:
		stats["mode"] = "spill-over"
	default:
		stats["mode"] = "failover"
	}
	ib.Stats = stats
	var out []inspect.Endpoint
	for _, name := range slices.Sorted(maps.Keys(b.zones)) {
		z := b.zones[name]
		var eps []*endpoint
		for addr, e := range z.byAddr {
			if e.addr == addr {
				eps = append(eps, e)
			}
		}
		slices.SortFunc(eps, func(x, y *endpoint) int { return strings.Compare(x.addr, y.addr) })
		for _, e := range eps {
			state := connectivity.Idle // no SubConn yet
			for i, sc := range e.subConns {
				s := sc.raw
				if s == connectivity.Ready && sc.watched {
					s = sc.health
				}
				if i == 0 {
					state = s
				} else {
					state = shard.BetterState(state, s)
				}
			}
			out = append(out, inspect.Endpoint{Addr: e.addr, Instance: e.id, Zone: name, State: state.String(),
				Weight: uint32(e.weight), Picks: e.picks.Load()})
		}
	}
	ib.Endpoints = out
}
