package outlier

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	gbalancer "google.golang.org/grpc/balancer"
	_ "google.golang.org/grpc/balancer/roundrobin" // the default child
	"google.golang.org/grpc/connectivity"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/failure"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/lbconfig"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
)

// Name is the policy's registered name.
const Name = "wayfinder_outlier_ejection"

// Defaults.
const (
	DefaultChild               = "round_robin"
	DefaultConsecutiveFailures = 5
	DefaultMinimumRequests     = 20
	DefaultInterval            = 10 * time.Second
	DefaultBaseEjectionTime    = 30 * time.Second
	DefaultMaxEjectionTime     = 5 * time.Minute
	DefaultMaxEjectionPercent  = 10
)

// ErrEjected is the error the child policy sees for an ejected endpoint.
var ErrEjected = errors.New(Name + ": endpoint ejected as an outlier")

func init() { gbalancer.Register(builder{}) }

// Config is the policy's service-config JSON.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// Child is the policy that chooses among the endpoints not ejected,
	// as a loadBalancingConfig list. Default [{"round_robin":{}}].
	Child lbconfig.Child `json:"child"`
	// ConsecutiveFailures ejects an endpoint after this many failed calls
	// in a row. Default 5; range 0..1000000; 0 disables.
	ConsecutiveFailures int `json:"consecutiveFailures"`
	// FailureRateThreshold ejects an endpoint whose share of failed calls
	// over one Interval is at least this, if it had MinimumRequests calls.
	// Default 0 (disabled); range 0..1.
	FailureRateThreshold float64 `json:"failureRateThreshold"`
	// MinimumRequests is the number of calls in an Interval below which
	// the failure rate is not judged. Default 20; range 1..1000000000.
	MinimumRequests int `json:"minimumRequests"`
	// Interval is the period over which failure rates are measured, and
	// after which a healthy endpoint's ejection multiplier decreases.
	// Default 10s; range 1ms..1h.
	Interval lbconfig.Duration `json:"interval"`
	// BaseEjectionTime is how long a first ejection lasts; the n-th
	// ejection in a row lasts n times longer. Default 30s; range 1ms..1h.
	BaseEjectionTime lbconfig.Duration `json:"baseEjectionTime"`
	// MaxEjectionTime caps an ejection. Default max(5m, baseEjectionTime);
	// at least baseEjectionTime, at most 24h.
	MaxEjectionTime lbconfig.Duration `json:"maxEjectionTime"`
	// MaxEjectionPercent caps the endpoints ejected at once, as a
	// percentage of all endpoints; one endpoint may always be ejected
	// unless it is 0. Default 10; range 0..100; 0 disables ejection.
	MaxEjectionPercent *int `json:"maxEjectionPercent"`
}

// ParseConfig parses and validates js, applying defaults.
func ParseConfig(js json.RawMessage) (*Config, error) {
	pct := DefaultMaxEjectionPercent
	cfg := &Config{
		Child:               lbconfig.DefaultChild(DefaultChild),
		ConsecutiveFailures: DefaultConsecutiveFailures,
		MinimumRequests:     DefaultMinimumRequests,
		Interval:            lbconfig.Duration(DefaultInterval),
		BaseEjectionTime:    lbconfig.Duration(DefaultBaseEjectionTime),
		MaxEjectionPercent:  &pct,
	}
	if err := lbconfig.Decode(Name, js, cfg); err != nil {
		return nil, err
	}
	if cfg.Child.Builder == nil {
		return nil, lbconfig.Invalid(Name, "child", "no policy")
	}
	if n := cfg.ConsecutiveFailures; n < 0 || n > 1e6 {
		return nil, lbconfig.Invalid(Name, "consecutiveFailures", "%d is out of range 0..1000000", n)
	}
	// !(x >= 0) also rejects NaN, which JSON cannot carry but a caller's
	// struct can.
	if r := cfg.FailureRateThreshold; !(r >= 0 && r <= 1) {
		return nil, lbconfig.Invalid(Name, "failureRateThreshold", "%v is out of range 0..1", r)
	}
	if cfg.ConsecutiveFailures == 0 && cfg.FailureRateThreshold == 0 {
		return nil, lbconfig.Invalid(Name, "consecutiveFailures", "0 and failureRateThreshold 0 disable every detection; set one")
	}
	if n := cfg.MinimumRequests; n < 1 || n > 1e9 {
		return nil, lbconfig.Invalid(Name, "minimumRequests", "%d is out of range 1..1000000000", n)
	}
	if d := time.Duration(cfg.Interval); d < time.Millisecond || d > time.Hour {
		return nil, lbconfig.Invalid(Name, "interval", "%v is out of range 1ms..1h", d)
	}
	base := time.Duration(cfg.BaseEjectionTime)
	if base < time.Millisecond || base > time.Hour {
		return nil, lbconfig.Invalid(Name, "baseEjectionTime", "%v is out of range 1ms..1h", base)
	}
	if cfg.MaxEjectionTime == 0 {
		cfg.MaxEjectionTime = lbconfig.Duration(max(DefaultMaxEjectionTime, base))
	}
	if d := time.Duration(cfg.MaxEjectionTime); d < base || d > 24*time.Hour {
		return nil, lbconfig.Invalid(Name, "maxEjectionTime", "%v is out of range baseEjectionTime (%v)..24h", d, base)
	}
	if cfg.MaxEjectionPercent == nil {
		cfg.MaxEjectionPercent = &pct
	}
	if p := *cfg.MaxEjectionPercent; p < 0 || p > 100 {
		return nil, lbconfig.Invalid(Name, "maxEjectionPercent", "%d is out of range 0..100", p)
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
	ctx, cancel := context.WithCancel(context.Background())
	b := &balancer{
		ClientConn: cc,
		opts:       opts,
		cfg:        cfg,
		byAddr:     map[string]*endpoint{},
		kick:       make(chan struct{}, 1),
		cancel:     cancel,
		parent:     shard.ParentID(cc),
	}
	b.gate.init()
	b.threshold.Store(int64(cfg.ConsecutiveFailures))
	b.wg.Go(func() { b.run(ctx) })
	b.id, b.unregister = inspect.Register(cc.Target(), "outlier", b.parent, b.describe)
	return b
}

// describe reports each address's connectivity and ejection state, and
// the picks and ejections counted, for package inspect.
func (b *balancer) describe(ib *inspect.Balancer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ib.CountsPicks, ib.Picks, ib.Ejections = b.countPicks, b.picks.Total(), b.ejections
	out := make([]inspect.Endpoint, 0, len(b.byAddr))
	for _, addr := range slices.Sorted(maps.Keys(b.byAddr)) {
		ep := b.byAddr[addr]
		state := connectivity.Idle // no SubConn yet
		for i, sc := range ep.subConns {
			if s := connectivity.State(sc.state.Load()); i == 0 {
				state = s
			} else {
				state = shard.BetterState(state, s)
			}
		}
		ejected := !ep.ejectedAt.IsZero()
		e := inspect.Endpoint{Addr: addr, Instance: ep.id, Zone: ep.zone, Weight: ep.weight, State: state.String(), Ejected: ejected, Stats: map[string]string{
			"ejected":              strconv.FormatBool(ejected),
			"consecutive_failures": strconv.FormatInt(ep.consec.Load(), 10),
			"ejections_in_a_row":   strconv.Itoa(ep.mult),
		}}
		if ep.picks != nil {
			e.Picks = ep.picks.Load()
		}
		out = append(out, e)
	}
	ib.Endpoints = out
}

// WayfinderParent implements shard.Parent: a Wayfinder policy below this
// one does not count picks, as this one does.
func (b *balancer) WayfinderParent() uint64 { return b.id }

// balancer wraps the child policy. It sees every SubConn the child makes
// (NewSubConn is intercepted and the SubConn wrapped), counts call
// results through the picker's Done callback, and ejects an endpoint by
// reporting its SubConns' health as TRANSIENT_FAILURE to the child, as
// grpc's xDS outlier detection does: the connection stays up, so an
// endpoint returns without reconnecting.
//
// # Locking
//
// gRPC serialises its calls into the balancer, SubConn state and health
// listeners included; the ejection goroutine is the only other caller
// into the child. The gate lets gRPC's calls in, nested
// or not, while the ejection goroutine is out, and lets the ejection
// goroutine in alone. mu guards the balancer's own state. Lock order:
// gate -> mu (the child calls NewSubConn and UpdateState, which take
// mu, inside the gate). mu is never held while calling into the child.
type balancer struct {
	// Embedded: the child's ClientConn is this balancer, which passes
	// everything through but NewSubConn, UpdateState, UpdateAddresses.
	gbalancer.ClientConn
	opts gbalancer.BuildOptions

	gate     gate
	child    gbalancer.Balancer // guarded by the gate
	childGen int                // guarded by the gate; bumped when the child policy changes
	closed   bool               // guarded by the gate

	mu         sync.Mutex
	cfg        *Config
	byAddr     map[string]*endpoint // every address of every endpoint
	eps        []*endpoint          // distinct endpoints, resolver order
	childState gbalancer.State
	inhibit    bool // inside UpdateClientConnState: one picker update at its end
	stopped    bool // Close was called: no more picker updates
	nextRate   time.Time

	id         uint64             // in package inspect
	parent     uint64             // inspect ID of the Wayfinder policy above, if any: do not count picks
	countPicks bool               // guarded by mu; the last picker counts picks
	picks      shard.PickCounters // guarded by mu; by each endpoint's first address
	ejections  uint64             // guarded by mu

	threshold atomic.Int64  // consecutive failures that eject; 0: off
	counting  atomic.Bool   // failure-rate detection is on: count every call
	kick      chan struct{} // 1-slot: evaluate now
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	unregister func() // removes the balancer from package inspect
}

// endpoint is one resolver endpoint's record, kept across updates while
// its first address stays in the resolver state.
type endpoint struct {
	consec atomic.Int64 // failures in a row
	succ   atomic.Int64 // calls not failed, this interval
	fail   atomic.Int64 // failed calls, this interval
	done   func(gbalancer.DoneInfo)
	picks  *atomic.Uint64 // set when the endpoint is made, if counting

	// Guarded by balancer.mu.
	id, zone  string // the registry instance's, for package inspect
	weight    uint32
	ejectedAt time.Time // zero if not ejected
	mult      int       // ejections in a row; the next lasts mult+1 bases
	subConns  []*subConn
}

// subConn wraps the SubConns the child creates, to find the endpoint of
// a picked SubConn and to stand between grpc's health listener and the
// child's. Pickers unwrap it before grpc sees it.
type subConn struct {
	gbalancer.SubConn
	b   *balancer
	ep  *endpoint // nil for an address not in the resolver state
	gen int

	// Guarded by the balancer.gate.
	health     func(gbalancer.SubConnState) // the child's health listener
	healthGen  int                          // bumped on every registration
	lastHealth gbalancer.SubConnState       // last real health, for unejection
	ejected    bool

	state atomic.Int32 // connectivity.State, health included, for package inspect
}

func (b *balancer) UpdateClientConnState(s gbalancer.ClientConnState) error {
	cfg, ok := s.BalancerConfig.(*Config)
	if !ok {
		cfg, _ = ParseConfig(nil)
	}
	b.mu.Lock()
	old := b.cfg
	b.cfg = cfg
	b.threshold.Store(int64(cfg.ConsecutiveFailures))
	b.counting.Store(cfg.FailureRateThreshold > 0)
	if old == nil || old.Interval != cfg.Interval || b.nextRate.IsZero() {
		b.nextRate = time.Now().Add(time.Duration(cfg.Interval))
	}
	byAddr := make(map[string]*endpoint, len(s.ResolverState.Endpoints))
	eps := make([]*endpoint, 0, len(s.ResolverState.Endpoints))
	for _, rep := range s.ResolverState.Endpoints {
		if len(rep.Addresses) == 0 || byAddr[rep.Addresses[0].Addr] != nil {
			continue
		}
		ep := b.byAddr[rep.Addresses[0].Addr]
		if ep == nil {
			ep = &endpoint{picks: b.picks.Counter(rep.Addresses[0].Addr)}
			ep.done = func(di gbalancer.DoneInfo) { b.record(ep, di) }
		}
		se := shard.FromChild(rep, gbalancer.State{})
		ep.id, ep.zone, ep.weight = se.Instance.ID, se.Instance.Zone, se.Weight
		eps = append(eps, ep)
		for _, a := range rep.Addresses {
			if byAddr[a.Addr] == nil {
				byAddr[a.Addr] = ep
			}
		}
	}
	b.byAddr, b.eps = byAddr, eps
	b.picks.Retain(func(addr string) bool { return byAddr[addr] != nil })
	b.inhibit = true
	b.mu.Unlock()

	b.gate.enter()
	if b.child == nil || cfg.Child.Name() != old.Child.Name() {
		if b.child != nil {
			b.child.Close()
		}
		b.childGen++
		b.child = cfg.Child.Builder.Build(b, b.opts)
	}
	err := b.child.UpdateClientConnState(gbalancer.ClientConnState{
		ResolverState:  s.ResolverState,
		BalancerConfig: cfg.Child.Config,
	})
	b.gate.exit()

	b.mu.Lock()
	b.inhibit = false
	b.sendPickerLocked()
	b.mu.Unlock()
	b.poke()
	return err
}

func (b *balancer) ResolverError(err error) {
	b.gate.enter()
	defer b.gate.exit()
	if b.child != nil {
		b.child.ResolverError(err)
	}
}

// UpdateSubConnState is never called: SubConns have state listeners.
func (b *balancer) UpdateSubConnState(gbalancer.SubConn, gbalancer.SubConnState) {}

func (b *balancer) ExitIdle() {
	b.gate.enter()
	defer b.gate.exit()
	if b.child != nil {
		b.child.ExitIdle()
	}
}

func (b *balancer) Close() {
	b.unregister()
	b.cancel()
	b.wg.Wait()
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
	b.gate.enter()
	defer b.gate.exit()
	b.closed = true
	if b.child != nil {
		b.child.Close()
	}
}

// NewSubConn implements balancer.ClientConn for the child; it is called
// inside the gate.
func (b *balancer) NewSubConn(addrs []gresolver.Address, opts gbalancer.NewSubConnOptions) (gbalancer.SubConn, error) {
	sc := &subConn{b: b, gen: b.childGen, lastHealth: gbalancer.SubConnState{ConnectivityState: connectivity.Connecting}}
	sc.state.Store(int32(connectivity.Idle))
	listener := opts.StateListener
	opts.StateListener = func(s gbalancer.SubConnState) {
		b.gate.enter()
		defer b.gate.exit()
		if b.closed || sc.gen != b.childGen {
			return
		}
		if s.ConnectivityState != connectivity.Ready {
			// A health listener lives while the SubConn is READY.
			sc.health = nil
			sc.healthGen++
		}
		sc.state.Store(int32(s.ConnectivityState))
		if listener != nil {
			listener(s)
		}
		if s.ConnectivityState == connectivity.Shutdown && sc.ep != nil {
			b.mu.Lock()
			sc.ep.subConns = deleteSubConn(sc.ep.subConns, sc)
			b.mu.Unlock()
		}
	}
	real, err := b.ClientConn.NewSubConn(addrs, opts)
	if err != nil {
		return nil, err
	}
	sc.SubConn = real
	if len(addrs) > 0 {
		b.mu.Lock()
		if ep := b.byAddr[addrs[0].Addr]; ep != nil {
			sc.ep = ep
			ep.subConns = append(ep.subConns, sc)
			sc.ejected = !ep.ejectedAt.IsZero()
		}
		b.mu.Unlock()
	}
	return sc, nil
}

func deleteSubConn(s []*subConn, sc *subConn) []*subConn {
	for i, x := range s {
		if x == sc {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}

// UpdateAddresses implements the deprecated balancer.ClientConn method.
func (b *balancer) UpdateAddresses(sc gbalancer.SubConn, addrs []gresolver.Address) {
	if w, ok := sc.(*subConn); ok {
		sc = w.SubConn
	}
	b.ClientConn.UpdateAddresses(sc, addrs)
}

// RemoveSubConn implements the deprecated balancer.ClientConn method.
func (b *balancer) RemoveSubConn(sc gbalancer.SubConn) {
	if w, ok := sc.(*subConn); ok {
		sc = w.SubConn
	}
	b.ClientConn.RemoveSubConn(sc)
}

// RegisterHealthListener is called by the child (pick_first), with
// inside the gate.
func (sc *subConn) RegisterHealthListener(l func(gbalancer.SubConnState)) {
	sc.healthGen++
	sc.health = l
	if l == nil {
		sc.SubConn.RegisterHealthListener(nil)
		return
	}
	gen := sc.healthGen
	b := sc.b
	sc.SubConn.RegisterHealthListener(func(s gbalancer.SubConnState) {
		b.gate.enter()
		defer b.gate.exit()
		if b.closed || sc.healthGen != gen || sc.gen != b.childGen {
			return
		}
		sc.lastHealth = s
		sc.state.Store(int32(s.ConnectivityState))
		if !sc.ejected {
			l(s)
		}
	})
}

// setEjected tells the child about an ejection or a return; inside the gate.
func (sc *subConn) setEjected(ej bool) {
	if sc.ejected == ej || sc.gen != sc.b.childGen {
		return
	}
	sc.ejected = ej
	if sc.health == nil {
		return
	}
	if ej {
		sc.health(gbalancer.SubConnState{ConnectivityState: connectivity.TransientFailure, ConnectionError: ErrEjected})
	} else {
		sc.health(sc.lastHealth)
	}
}

// UpdateState implements balancer.ClientConn for the child.
func (b *balancer) UpdateState(s gbalancer.State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.childState = s
	b.sendPickerLocked()
}

func (b *balancer) sendPickerLocked() {
	if b.inhibit || b.stopped || b.childState.Picker == nil {
		return
	}
	b.countPicks = b.parent == 0 && inspect.CountingPicks()
	b.ClientConn.UpdateState(gbalancer.State{
		ConnectivityState: b.childState.ConnectivityState,
		Picker:            &picker{child: b.childState.Picker, count: b.countPicks},
	})
}

// picker delegates to the child's and counts each call's result against
// the endpoint of the SubConn it went to, and the pick if count is set.
type picker struct {
	child gbalancer.Picker
	count bool
}

func (p *picker) Pick(info gbalancer.PickInfo) (gbalancer.PickResult, error) {
	r, err := p.child.Pick(info)
	if err != nil {
		return r, err
	}
	sc, ok := r.SubConn.(*subConn)
	if !ok {
		return r, nil
	}
	r.SubConn = sc.SubConn
	ep := sc.ep
	if ep == nil {
		return r, nil
	}
	if p.count {
		ep.picks.Add(1)
	}
	if childDone := r.Done; childDone != nil {
		r.Done = func(di gbalancer.DoneInfo) {
			ep.done(di)
			childDone(di)
		}
	} else {
		r.Done = ep.done // no allocation when the child sets no Done
	}
	return r, nil
}

// record counts one call's result and wakes the ejection goroutine when
// the consecutive-failure threshold is reached.
func (b *balancer) record(ep *endpoint, di gbalancer.DoneInfo) {
	// Only a read of shared memory on the common path, a success
	// without failure-rate detection.
	counting := b.counting.Load()
	if !IsFailure(di.Err) {
		if counting {
			ep.succ.Add(1)
		}
		if ep.consec.Load() != 0 {
			ep.consec.Store(0)
		}
		return
	}
	if counting {
		ep.fail.Add(1)
	}
	n := ep.consec.Add(1)
	if t := b.threshold.Load(); t > 0 && n >= t {
		b.poke()
	}
}

func (b *balancer) poke() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// IsFailure reports whether a call's error counts against the endpoint:
// UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN and DATA_LOSS (the
// codes gRPC maps from HTTP 5xx, what a broken transport gives, and what
// a host that hangs gives). Other codes, RESOURCE_EXHAUSTED included,
// are the application's answers and count as successes; the package doc
// says why P2C differs.
func IsFailure(err error) bool { return failure.Ejects(err) }

// run is the ejection goroutine: it evaluates when a threshold is
// reached, at each interval, and when an ejection ends.
func (b *balancer) run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		case <-t.C:
		}
		changes, wake := b.evaluate(time.Now())
		if len(changes) > 0 {
			b.gate.exclusive()
			if !b.closed {
				for _, c := range changes {
					c.sc.setEjected(c.eject)
				}
			}
			b.gate.release()
		}
		t.Reset(wake)
	}
}

type change struct {
	sc    *subConn
	eject bool
}

// evaluate decides ejections and returns, and when to run next.
func (b *balancer) evaluate(now time.Time) ([]change, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cfg := b.cfg
	var out []change
	mark := func(ep *endpoint, eject bool) {
		for _, sc := range ep.subConns {
			out = append(out, change{sc, eject})
		}
	}
	base, maxT := time.Duration(cfg.BaseEjectionTime), time.Duration(cfg.MaxEjectionTime)
	until := func(ep *endpoint) time.Time {
		return ep.ejectedAt.Add(min(base*time.Duration(ep.mult), maxT))
	}
	ejected := 0
	for _, ep := range b.eps {
		if ep.ejectedAt.IsZero() {
			continue
		}
		if !now.Before(until(ep)) {
			ep.ejectedAt = time.Time{}
			ep.consec.Store(0)
			mark(ep, false)
			continue
		}
		ejected++
	}
	rateTick := !now.Before(b.nextRate)
	if rateTick {
		b.nextRate = now.Add(time.Duration(cfg.Interval))
	}
	allowed := 0
	if p := *cfg.MaxEjectionPercent; p > 0 {
		allowed = max(1, len(b.eps)*p/100)
	}
	for _, ep := range b.eps {
		eject := cfg.ConsecutiveFailures > 0 && ep.consec.Load() >= int64(cfg.ConsecutiveFailures)
		if rateTick {
			s, f := ep.succ.Swap(0), ep.fail.Swap(0)
			if !ep.ejectedAt.IsZero() {
				continue
			}
			if cfg.FailureRateThreshold > 0 && s+f >= int64(cfg.MinimumRequests) && float64(f) >= cfg.FailureRateThreshold*float64(s+f) {
				eject = true
			}
			if !eject && ep.mult > 0 {
				ep.mult-- // a healthy interval shortens the next ejection
			}
		}
		if !eject || !ep.ejectedAt.IsZero() || ejected >= allowed {
			continue
		}
		ep.ejectedAt = now
		b.ejections++
		if base*time.Duration(ep.mult) < maxT {
			ep.mult++
		}
		ep.consec.Store(0)
		ep.succ.Store(0)
		ep.fail.Store(0)
		ejected++
		mark(ep, true)
	}
	wake := b.nextRate.Sub(now)
	for _, ep := range b.eps {
		if !ep.ejectedAt.IsZero() {
			wake = min(wake, until(ep).Sub(now))
		}
	}
	return out, max(wake, time.Millisecond)
}

// gate excludes the ejection goroutine from gRPC's calls into the child
// and lets those calls nest: a test ClientConn may call a listener from
// inside NewSubConn, which a mutex would deadlock on.
type gate struct {
	mu       sync.Mutex
	cond     sync.Cond
	inside   int  // gRPC calls in progress
	ejecting bool // the ejection goroutine is in
}

func (g *gate) init() { g.cond.L = &g.mu }

// enter lets a gRPC call in once the ejection goroutine is out.
func (g *gate) enter() {
	g.mu.Lock()
	for g.ejecting {
		g.cond.Wait()
	}
	g.inside++
	g.mu.Unlock()
}

func (g *gate) exit() {
	g.mu.Lock()
	g.inside--
	if g.inside == 0 {
		g.cond.Broadcast()
	}
	g.mu.Unlock()
}

// exclusive lets the ejection goroutine in alone.
func (g *gate) exclusive() {
	g.mu.Lock()
	for g.inside > 0 || g.ejecting {
		g.cond.Wait()
	}
	g.ejecting = true
	g.mu.Unlock()
}

func (g *gate) release() {
	g.mu.Lock()
	g.ejecting = false
	g.cond.Broadcast()
	g.mu.Unlock()
}
