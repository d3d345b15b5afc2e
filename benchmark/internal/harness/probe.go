package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
)

// probeName is a load-balancing policy of the harness that runs another
// policy (its child) unchanged and records, for a probe, what the child
// is given and what it publishes: each resolver state's size, each
// SubConn's health-aware READY and its shutdown, and each picker with
// the time gRPC got it. It wraps the child's SubConns to see their
// health listeners and Shutdown calls, and the pickers it passes on
// unwrap them again (as grpc's outlier detection does), which costs a
// type assertion per pick.
//
// Its config names the probe and the child:
// {"wfbench_probe":{"probe":3,"child":"round_robin"}}.
const probeName = "wfbench_probe"

func init() { gbalancer.Register(probeBuilder{}) }

var (
	probes   sync.Map // id → *probe
	probeIDs atomic.Uint64
)

// probe is what a probe balancer records for the scenario that made it.
// mu guards every field but id; it is taken by the balancer's callbacks
// (gRPC's serializer) and by the scenario, and nothing is called with
// it held.
type probe struct {
	id uint64

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when something watched changes
	seq     uint64        // orders the events below

	watch    string     // the address whose SubConns keep the pickers that include and exclude them
	scs      []*probeSC // SubConns made for watch, oldest first
	pending  []*probeSC // of those, the ones healthy or shut down since the last picker
	resolved []resolvedStamp

	target      int   // healthy SubConns that make the full state
	healthy     int   // SubConns whose last health update was READY, not shut down
	full        stamp // when healthy first reached target
	fullPicker  stamp // the first picker published after full
	publishes   int
	fullPending bool
}

// stamp is an event: when, its place in the order, and for a picker
// publication the child's picker.
type stamp struct {
	at     time.Time
	seq    uint64
	picker gbalancer.Picker
}

type resolvedStamp struct {
	stamp
	size int
}

// newProbe returns a probe for a ClientConn whose default service config
// is probe.config(child); close it when the ClientConn is closed.
func newProbe(watch string, target int) *probe {
	p := &probe{id: probeIDs.Add(1), changed: make(chan struct{}), watch: watch, target: target}
	probes.Store(p.id, p)
	return p
}

func (p *probe) close() { probes.Delete(p.id) }

// config is the loadBalancingConfig entry that runs child under p.
func (p *probe) config(child string) string {
	return fmt.Sprintf(`{%q:{"probe":%d,"child":%q}}`, probeName, p.id, child)
}

// nextLocked returns the next event's stamp, taken now.
func (p *probe) nextLocked() stamp {
	p.seq++
	return stamp{at: time.Now(), seq: p.seq}
}

func (p *probe) signalLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// mark returns the current place in the order of events: what happens
// after the call has a greater seq.
func (p *probe) mark() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seq
}

// wait waits until ok, called with p.mu held, is true, for up to d.
func (p *probe) wait(ctx context.Context, d time.Duration, what string, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		p.mu.Lock()
		done, ch := ok(), p.changed
		p.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("probe: %s not seen within %v", what, d)
		}
	}
}

// resolvedAfter returns the first resolver state of size after seq, if
// there is one. p.mu must be held.
func (p *probe) resolvedAfterLocked(seq uint64, size int) (resolvedStamp, bool) {
	for _, r := range p.resolved {
		if r.seq > seq && r.size == size {
			return r, true
		}
	}
	return resolvedStamp{}, false
}

// subConnAfterLocked returns the first SubConn for watch made after seq.
func (p *probe) subConnAfterLocked(seq uint64) *probeSC {
	for _, sc := range p.scs {
		if sc.made > seq {
			return sc
		}
	}
	return nil
}

func (p *probe) resolverState(size int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resolved = append(p.resolved, resolvedStamp{stamp: p.nextLocked(), size: size})
	if len(p.resolved) > 64 {
		p.resolved = append(p.resolved[:0], p.resolved[len(p.resolved)-64:]...)
	}
	p.signalLocked()
}

func (p *probe) made(sc *probeSC) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sc.made = p.nextLocked().seq
	if sc.addr == p.watch {
		sc.watched = true
		p.scs = append(p.scs, sc)
		if len(p.scs) > 64 {
			p.scs = append(p.scs[:0], p.scs[len(p.scs)-64:]...)
		}
		p.signalLocked()
	}
}

// health records whether sc is usable: its last health update was READY
// and its connectivity has not left READY since.
func (p *probe) health(sc *probeSC, ready bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sc.shut || sc.healthy == ready {
		return
	}
	sc.healthy = ready
	st := p.nextLocked()
	if ready {
		p.healthy++
		if sc.watched && sc.up.at.IsZero() {
			sc.up = st
			p.pending = append(p.pending, sc)
			p.signalLocked()
		}
		if p.healthy == p.target && p.full.at.IsZero() {
			p.full, p.fullPending = st, true
			p.signalLocked()
		}
	} else {
		p.healthy--
	}
}

func (p *probe) shutdown(sc *probeSC) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sc.shut {
		return
	}
	sc.shut = true
	if sc.healthy {
		sc.healthy = false
		p.healthy--
	}
	st := p.nextLocked()
	if sc.watched {
		sc.down = st
		p.pending = append(p.pending, sc)
		p.signalLocked()
	}
}

// published records a picker gRPC has just been given: it is the first
// to include the SubConns that became healthy since the last one, and
// the first to exclude those shut down since.
func (p *probe) published(child gbalancer.Picker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.nextLocked()
	st.picker = child
	p.publishes++
	for _, sc := range p.pending {
		switch {
		case sc.shut && sc.out.at.IsZero():
			sc.out = st
		case !sc.shut && sc.in.at.IsZero():
			sc.in = st
		}
	}
	signal := len(p.pending) > 0
	p.pending = p.pending[:0]
	if p.fullPending {
		p.fullPicker, p.fullPending, signal = st, false, true
	}
	if signal {
		p.signalLocked()
	}
}

// probeSC is a SubConn of the child, seen by the probe. Its fields but
// SubConn, p and addr are guarded by p.mu.
type probeSC struct {
	gbalancer.SubConn
	p    *probe
	addr string

	made    uint64
	watched bool
	healthy bool
	shut    bool
	up      stamp // healthy and READY
	in      stamp // the first picker published after up
	down    stamp // shut down
	out     stamp // the first picker published after down
}

func (sc *probeSC) RegisterHealthListener(l func(gbalancer.SubConnState)) {
	sc.SubConn.RegisterHealthListener(func(s gbalancer.SubConnState) {
		// Recorded first: the listener builds and publishes the picker.
		sc.p.health(sc, s.ConnectivityState == connectivity.Ready)
		l(s)
	})
}

func (sc *probeSC) Shutdown() {
	sc.p.shutdown(sc)
	sc.SubConn.Shutdown()
}

// unwrapPicker hands gRPC the SubConns the child's picker picks, which
// are probeSCs, as gRPC made them.
type unwrapPicker struct{ gbalancer.Picker }

func (u unwrapPicker) Pick(info gbalancer.PickInfo) (gbalancer.PickResult, error) {
	r, err := u.Picker.Pick(info)
	if sc, ok := r.SubConn.(*probeSC); ok {
		r.SubConn = sc.SubConn
	}
	return r, err
}

type probeCC struct {
	gbalancer.ClientConn
	p *probe
}

func (c *probeCC) NewSubConn(addrs []gresolver.Address, opts gbalancer.NewSubConnOptions) (gbalancer.SubConn, error) {
	sc := &probeSC{p: c.p}
	if len(addrs) > 0 {
		sc.addr = addrs[0].Addr
	}
	if l := opts.StateListener; l != nil {
		opts.StateListener = func(s gbalancer.SubConnState) {
			if s.ConnectivityState != connectivity.Ready {
				c.p.health(sc, false)
			}
			l(s)
		}
	}
	//lint:ignore SA1019 NewSubConn is the only way to make a SubConn; the probe passes on the child's addresses as given.
	real, err := c.ClientConn.NewSubConn(addrs, opts)
	if err != nil {
		return nil, err
	}
	sc.SubConn = real
	c.p.made(sc)
	return sc, nil
}

// RemoveSubConn and UpdateAddresses are deprecated, and the children
// used here do not call them; gRPC's own need its SubConn.
func (c *probeCC) RemoveSubConn(sc gbalancer.SubConn) { sc.Shutdown() }

func (c *probeCC) UpdateAddresses(sc gbalancer.SubConn, addrs []gresolver.Address) {
	//lint:ignore SA1019 forwarding the deprecated method the interface still requires.
	sc.UpdateAddresses(addrs)
}

func (c *probeCC) UpdateState(s gbalancer.State) {
	child := s.Picker
	s.Picker = unwrapPicker{child}
	c.ClientConn.UpdateState(s)
	c.p.published(child)
}

type probeConfig struct {
	serviceconfig.LoadBalancingConfig `json:"-"`
	Probe                             uint64 `json:"probe"`
	Child                             string `json:"child"`
	childCfg                          serviceconfig.LoadBalancingConfig
}

type probeBuilder struct{}

func (probeBuilder) Name() string { return probeName }

func (probeBuilder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	cfg := &probeConfig{}
	if err := json.Unmarshal(js, cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", probeName, err)
	}
	b := gbalancer.Get(cfg.Child)
	if b == nil {
		return nil, fmt.Errorf("%s: child policy %q is not registered", probeName, cfg.Child)
	}
	if cp, ok := b.(gbalancer.ConfigParser); ok {
		c, err := cp.ParseConfig(json.RawMessage("{}"))
		if err != nil {
			return nil, fmt.Errorf("%s: child %s: %w", probeName, cfg.Child, err)
		}
		cfg.childCfg = c
	}
	if _, ok := probes.Load(cfg.Probe); !ok {
		return nil, fmt.Errorf("%s: no probe %d", probeName, cfg.Probe)
	}
	return cfg, nil
}

func (probeBuilder) Build(cc gbalancer.ClientConn, opts gbalancer.BuildOptions) gbalancer.Balancer {
	return &probeBalancer{cc: cc, opts: opts}
}

// probeBalancer builds its child at the first update, which names the
// probe. gRPC calls it from one goroutine at a time.
type probeBalancer struct {
	cc    gbalancer.ClientConn
	opts  gbalancer.BuildOptions
	p     *probe
	child gbalancer.Balancer
}

func (b *probeBalancer) UpdateClientConnState(s gbalancer.ClientConnState) error {
	cfg, ok := s.BalancerConfig.(*probeConfig)
	if !ok {
		return fmt.Errorf("%s: config %T, want its own", probeName, s.BalancerConfig)
	}
	if b.child == nil {
		v, ok := probes.Load(cfg.Probe)
		if !ok {
			return fmt.Errorf("%s: no probe %d", probeName, cfg.Probe)
		}
		b.p = v.(*probe)
		b.child = gbalancer.Get(cfg.Child).Build(&probeCC{ClientConn: b.cc, p: b.p}, b.opts)
	}
	b.p.resolverState(len(s.ResolverState.Endpoints))
	s.BalancerConfig = cfg.childCfg
	return b.child.UpdateClientConnState(s)
}

func (b *probeBalancer) ResolverError(err error) {
	if b.child != nil {
		b.child.ResolverError(err)
	}
}

func (b *probeBalancer) UpdateSubConnState(gbalancer.SubConn, gbalancer.SubConnState) {}

func (b *probeBalancer) ExitIdle() {
	if b.child != nil {
		b.child.ExitIdle()
	}
}

func (b *probeBalancer) Close() {
	if b.child != nil {
		b.child.Close()
	}
}

// pickCheck picks from a child's picker up to picks times, calling each
// Done at once, and reports whether any pick returned a SubConn for
// addr, and how many distinct SubConns it saw. It stops at the first
// pick for addr if stop.
func pickCheck(p gbalancer.Picker, picks int, addr string, stop bool) (found bool, distinct int, err error) {
	seen := map[*probeSC]bool{}
	info := gbalancer.PickInfo{FullMethodName: "/hello.HelloService/SayHello", Ctx: context.Background()}
	for range picks {
		r, err := p.Pick(info)
		if err != nil {
			return found, len(seen), fmt.Errorf("pick: %w", err)
		}
		if r.Done != nil {
			r.Done(gbalancer.DoneInfo{})
		}
		sc, ok := r.SubConn.(*probeSC)
		if !ok {
			return found, len(seen), fmt.Errorf("pick returned a %T, not the probe's SubConn", r.SubConn)
		}
		seen[sc] = true
		if sc.addr == addr {
			found = true
			if stop {
				break
			}
		}
	}
	return found, len(seen), nil
}
