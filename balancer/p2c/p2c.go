package p2c

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/clock"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/failure"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/lbconfig"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/orcaweight"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
)

// Name is the policy's registered name.
const Name = "wayfinder_p2c_ewma"

// Defaults.
const (
	DefaultDecay        = 10 * time.Second
	DefaultErrorPenalty = 250 * time.Millisecond
)

func init() {
	gbalancer.Register(lbconfig.Builder[*Config]{Policy: Name, Parse: ParseConfig, New: newBalancer})
}

// Config is the policy's service-config JSON.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// Decay is the EWMA time constant: how fast old latencies are
	// forgotten, and how soon an endpoint that looked slow is tried
	// again. Default 10s; range 1ms..1h.
	Decay lbconfig.Duration `json:"decay,omitempty"`
	// ErrorPenalty is the latency charged for a failed call (see the
	// package doc for which codes count), so that an endpoint that fails
	// fast does not look fast. Default 250ms; range 0..1m; 0 disables.
	ErrorPenalty *lbconfig.Duration `json:"errorPenalty,omitempty"`
	// LoadReports, if set, draws the two candidates in proportion to the
	// registry weight blended with ORCA load reports (see the package
	// doc, "Load reports"); {} takes the defaults. Off when absent: the
	// candidates are drawn uniformly and registry weights are ignored.
	LoadReports *orcaweight.Config `json:"loadReports,omitempty"`
}

// ParseConfig parses and validates js, applying defaults.
func ParseConfig(js json.RawMessage) (*Config, error) {
	cfg := &Config{Decay: lbconfig.Duration(DefaultDecay)}
	if err := lbconfig.Decode(Name, js, cfg); err != nil {
		return nil, err
	}
	if d := time.Duration(cfg.Decay); d < time.Millisecond || d > time.Hour {
		return nil, lbconfig.Invalid(Name, "decay", "%v is out of range 1ms..1h", d)
	}
	if cfg.ErrorPenalty == nil {
		p := lbconfig.Duration(DefaultErrorPenalty)
		cfg.ErrorPenalty = &p
	}
	if p := time.Duration(*cfg.ErrorPenalty); p < 0 || p > time.Minute {
		return nil, lbconfig.Invalid(Name, "errorPenalty", "%v is out of range 0..1m", p)
	}
	if cfg.LoadReports != nil {
		if err := cfg.LoadReports.Validate(Name); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

func newBalancer(cc gbalancer.ClientConn, opts gbalancer.BuildOptions, cfg *Config) gbalancer.Balancer {
	c := clock.Shared()
	c.Acquire()
	pol := newPolicy(cfg, systemClock{c})
	return &balancer{Balancer: shard.New(cc, opts, pol), clock: c, pol: pol}
}

// balancer releases the shared clock and stops the load-report ticker
// when it closes.
type balancer struct {
	*shard.Balancer
	clock *clock.Clock
	pol   *policy
	once  sync.Once
}

func (b *balancer) Close() {
	b.Balancer.Close()
	b.once.Do(func() {
		b.clock.Release()
		b.pol.orca.Close()
	})
}

// timeSource is the policy's clock; tests substitute a fake one.
type timeSource interface {
	// Now returns nanoseconds and whether they were read exactly, just
	// now, rather than from a coarse clock up to a millisecond old.
	Now() (ns int64, exact bool)
	// Exact reads the time exactly.
	Exact() int64
}

type systemClock struct{ c *clock.Clock }

func (s systemClock) Now() (int64, bool) { return s.c.Now() }
func (systemClock) Exact() int64         { return clock.Exact() }

// sampleMask selects the calls whose latency is measured while the clock
// is coarse (calls arrive more often than every few milliseconds): one in
// sampleMask+1. Timing a call costs two exact clock reads, 50-120 ns on
// VMs, and a closure, several times the rest of a pick; at rates where
// the clock is coarse, one call in 16 still gives the EWMA many samples
// per decay period. When calls are rare the clock reads exactly anyway
// and every call is timed.
const sampleMask = 15

// policy keeps per-endpoint statistics for each endpoint of the frame
// (shard.Endpoint.ID, whose Data they are), so that they survive picker
// rebuilds (any endpoint changing state) and resolver updates (any
// instance changing). It is guarded by shard.Balancer's mutex.
type policy struct {
	cfg   *Config
	par   *params // made from cfg; nil until the first picker
	stats map[uint64]*stats
	clock timeSource
	orca  orcaweight.State // load reports (orca.go)
}

func newPolicy(cfg *Config, clock timeSource) *policy {
	return &policy{cfg: cfg, stats: map[uint64]*stats{}, clock: clock}
}

// Describe implements shard.Describer for the debug view: the decayed
// peak-EWMA latency and the calls in flight.
func (p *policy) Describe(e *shard.Endpoint) map[string]string {
	s, ok := e.Data.(*stats)
	if !ok {
		return nil
	}
	return map[string]string{
		"ewma_ms":  strconv.FormatFloat(s.cost(p.clock.Exact(), p.par)/1e6, 'f', 3, 64),
		"inflight": strconv.FormatInt(s.inflight.Load(), 10),
	}
}

func (p *policy) SetConfig(c serviceconfig.LoadBalancingConfig) error {
	if cfg, ok := c.(*Config); ok {
		p.cfg = cfg
		p.orca.Set(cfg.LoadReports, p.clock.Exact)
	}
	return nil
}

// Picker costs O(ready endpoints) for the picker's array, plus O(all)
// when endpoints are added (their seed) or the config changed; the
// statistics of endpoints that stay are untouched.
func (p *policy) Picker(u *shard.Update) gbalancer.Picker {
	if p.par == nil || p.par.cfg != p.cfg {
		p.par = newParams(p.cfg, p.clock)
		for _, s := range p.stats {
			s.params.Store(p.par) // a config change reaches calls in flight
		}
	}
	par := p.par
	// Forget endpoints that are gone from the resolver; keep the rest,
	// ready or not, so that a flapping endpoint keeps its history.
	for _, e := range u.Removed {
		delete(p.stats, e.ID)
	}
	if len(u.Added) > 0 {
		// A new endpoint starts at its peers' mean cost: starting at 0
		// would send it every call until its first answer.
		now := p.clock.Exact()
		var sum float64
		for _, s := range p.stats {
			sum += s.cost(now, par)
		}
		seed := 0.0
		if len(p.stats) > 0 {
			seed = sum / float64(len(p.stats))
		}
		for _, e := range u.Added {
			s := newStats(seed, now, par)
			s.addr = e.Addr
			p.stats[e.ID] = s
			e.Data = s
		}
	}
	if p.cfg.LoadReports != nil || p.orca.On() {
		return p.orcaPicker(u, par, p.cfg.LoadReports != nil)
	}
	if len(u.Ready) == 0 {
		return nil
	}
	pk := &picker{eps: make([]endpoint, len(u.Ready)), params: par}
	for i, e := range u.Ready {
		pk.eps[i] = endpoint{picker: e.Picker, stats: e.Data.(*stats)}
	}
	return pk
}

// params are the config and clock as calls in flight see them.
type params struct {
	cfg          *Config // the config they were made from
	tau, penalty float64
	decayAfter   int64 // ns: below tau/1000 the decay is under 0.1% and skipped
	clock        timeSource
	coarse       *clock.Clock // clock's, if it is the system's: read without an interface call
}

func newParams(cfg *Config, ts timeSource) *params {
	par := &params{cfg: cfg, tau: float64(cfg.Decay), penalty: float64(*cfg.ErrorPenalty), clock: ts}
	par.decayAfter = int64(par.tau * 1e-3)
	if sc, ok := ts.(systemClock); ok {
		par.coarse = sc.c
	}
	return par
}

// now reads the clock as timeSource.Now does.
func (par *params) now() (int64, bool) {
	if c := par.coarse; c != nil {
		return c.Now()
	}
	return par.clock.Now()
}

// exact reads the clock exactly.
func (par *params) exact() int64 {
	if par.coarse != nil {
		return clock.Exact()
	}
	return par.clock.Exact()
}

// stats are one endpoint's load statistics. Picks read them without
// locks; mu only serialises the read-modify-write of an update.
type stats struct {
	inflight atomic.Int64 // every call in flight
	timed    atomic.Int64 // the timed calls among them
	startSum atomic.Int64 // sum of the timed calls' start times, ns
	costBits atomic.Uint64
	stamp    atomic.Int64 // time of the last cost update, ns
	params   atomic.Pointer[params]
	done     func(gbalancer.DoneInfo) // untimed calls' Done, made once
	addr     string                   // the endpoint's, for tests
	mu       sync.Mutex
	_        [64]byte // keep hot counters of neighbours off this cache line
}

func newStats(cost float64, now int64, par *params) *stats {
	s := &stats{}
	s.costBits.Store(math.Float64bits(cost))
	s.stamp.Store(now)
	s.params.Store(par)
	// A closure rather than the method value, which adds a call.
	s.done = func(di gbalancer.DoneInfo) {
		s.inflight.Add(-1)
		if di.Err != nil {
			s.failed(di.Err)
		}
	}
	return s
}

// cost returns the latency estimate at now: the stored peak EWMA decayed
// toward zero since its last update, so that an endpoint that stopped
// being picked because it was slow is tried again after a few decay
// periods.
func (s *stats) cost(now int64, par *params) float64 {
	c := math.Float64frombits(s.costBits.Load())
	// Below tau/1000 the decay is under 0.1%: skip math.Exp on the hot
	// path, where the endpoint is busy and dt is small.
	if dt := now - s.stamp.Load(); dt > par.decayAfter {
		c = decay(c, dt, par.tau)
	}
	return c
}

func decay(c float64, dt int64, tau float64) float64 { return c * math.Exp(-float64(dt)/tau) }

// load is the score P2C compares: latency times outstanding calls, where
// latency is at least the mean age of the timed calls still in flight, so
// that an endpoint that stalls looks slow before any call returns.
func (s *stats) load(now int64, par *params) float64 {
	if l, ok := s.quickLoad(now, par); ok {
		return l
	}
	return (s.latency(now, par) + 1) * float64(s.inflight.Load()+1)
}

// quickLoad is load in the common case, a cost updated lately and no
// timed call in flight, and false otherwise; it has no call, so that it
// is inlined into Pick.
func (s *stats) quickLoad(now int64, par *params) (float64, bool) {
	if now-s.stamp.Load() > par.decayAfter || s.timed.Load() > 0 {
		return 0, false
	}
	return (math.Float64frombits(s.costBits.Load()) + 1) * float64(s.inflight.Load()+1), true
}

// latency is load's latency in every case: the decayed cost, or the mean
// age of the timed calls in flight if greater.
func (s *stats) latency(now int64, par *params) float64 {
	c := s.cost(now, par)
	if m := s.timed.Load(); m > 0 { // a racing update can skew this one comparison, no more
		c = max(c, float64(now-s.startSum.Load()/m))
	}
	return c
}

// observe folds one call's latency into the peak EWMA: a slower sample
// replaces the estimate at once (peak), a faster one is averaged in with
// weight depending on the time since the last sample.
func (s *stats) observe(now int64, rtt, tau float64) {
	s.mu.Lock()
	c := math.Float64frombits(s.costBits.Load())
	if rtt > c {
		c = rtt
	} else {
		w := math.Exp(-float64(max(now-s.stamp.Load(), 0)) / tau)
		c = c*w + rtt*(1-w)
	}
	s.costBits.Store(math.Float64bits(c))
	s.stamp.Store(max(now, s.stamp.Load())) // coarse and exact times may interleave
	s.mu.Unlock()
}

// untimedDone ends a call whose latency is not measured; a failure still
// counts, at the error penalty, so that sampling never hides an endpoint
// that fails fast.
func (s *stats) untimedDone(di gbalancer.DoneInfo) {
	s.inflight.Add(-1)
	if di.Err != nil {
		s.failed(di.Err)
	}
}

func (s *stats) failed(err error) {
	par := s.params.Load()
	if par.penalty > 0 && failure.Penalised(err) {
		now, _ := par.now()
		s.observe(now, par.penalty, par.tau)
	}
}

type endpoint struct {
	picker gbalancer.Picker
	stats  *stats
}

type picker struct {
	eps    []endpoint
	params *params
}

func (p *picker) Pick(info gbalancer.PickInfo) (gbalancer.PickResult, error) {
	// One random word: bits 35-62 choose the first endpoint, 7-34 the
	// second and 0-6 whether to time the call, so the three are
	// independent. 28 bits keep the bias of multiply-shift below n/2^28.
	// math/rand/v2 keeps per-thread state and takes no lock; the runtime's
	// cheaper wyrand is reachable only through go:linkname, which a
	// library should not impose on its users' builds.
	r := rand.Uint64()
	par := p.params
	var now int64
	var exact bool
	if c := par.coarse; c != nil { // the system clock, inlined
		var ok bool
		if now, ok = c.Coarse(); !ok {
			now, exact = c.Now()
		}
	} else {
		now, exact = par.clock.Now()
	}
	e := &p.eps[0]
	if n := uint64(len(p.eps)); n > 1 {
		i := (r >> 35 & (1<<28 - 1)) * n >> 28
		j := (r >> 7 & (1<<28 - 1)) * (n - 1) >> 28
		if j >= i {
			j++
		}
		a, b := &p.eps[i], &p.eps[j]
		la, ok := a.stats.quickLoad(now, par)
		if !ok {
			la = a.stats.load(now, par)
		}
		lb, ok := b.stats.quickLoad(now, par)
		if !ok {
			lb = b.stats.load(now, par)
		}
		if lb < la {
			a = b
		}
		e = a
	}
	res, err := e.picker.Pick(info)
	if err != nil {
		return res, err
	}
	s := e.stats
	s.inflight.Add(1)
	if !exact && r&sampleMask != 0 {
		if res.Done == nil {
			res.Done = s.done // no allocation on the common path
			return res, nil
		}
		childDone := res.Done
		res.Done = func(di gbalancer.DoneInfo) {
			s.untimedDone(di)
			childDone(di)
		}
		return res, nil
	}
	if !exact {
		now = par.exact()
	}
	// startSum before timed here, and the reverse in Done, so that a
	// racing reader errs toward a younger mean age, never an older one.
	s.startSum.Add(now)
	s.timed.Add(1)
	t := timedCalls.Get().(*timedCall)
	t.s, t.start, t.par, t.child = s, now, par, res.Done
	res.Done = t.done
	return res, nil
}

// timedCall is a timed call's state until its Done. They are pooled, so
// that timing a call allocates nothing: gRPC calls Done once per pick.
type timedCall struct {
	s     *stats
	start int64
	par   *params
	child func(gbalancer.DoneInfo)
	done  func(gbalancer.DoneInfo) // t.finish, bound once
}

var timedCalls sync.Pool

func newTimedCall() any {
	t := &timedCall{}
	t.done = t.finish
	return t
}

func init() { timedCalls.New = newTimedCall }

func (t *timedCall) finish(di gbalancer.DoneInfo) {
	s, start, par, childDone := t.s, t.start, t.par, t.child
	t.s, t.par, t.child = nil, nil, nil
	timedCalls.Put(t)
	end := par.exact()
	rtt := float64(end - start)
	if di.Err != nil && par.penalty > rtt && failure.Penalised(di.Err) {
		rtt = par.penalty
	}
	s.observe(end, rtt, par.tau)
	s.timed.Add(-1)
	s.startSum.Add(-start)
	s.inflight.Add(-1)
	if childDone != nil {
		childDone(di)
	}
}
