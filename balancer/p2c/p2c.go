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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/lbconfig"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
)

// Name is the policy's registered name.
const Name = "wayfinder_p2c_ewma"

// Defaults.
const (
	DefaultDecay        = 10 * time.Second
	DefaultErrorPenalty = 250 * time.Millisecond
)

func init() { gbalancer.Register(builder{}) }

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
	return cfg, nil
}

type builder struct{}

func (builder) Name() string { return Name }

func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return ParseConfig(js)
}

func (builder) Build(cc gbalancer.ClientConn, opts gbalancer.BuildOptions) gbalancer.Balancer {
	cfg, _ := ParseConfig(nil)
	return shard.New(cc, opts, &policy{cfg: cfg, stats: map[string]*stats{}, clock: monotonic})
}

// epoch anchors the monotonic clock; nanoseconds since it fit an int64
// for centuries.
var epoch = time.Now()

func monotonic() int64 { return int64(time.Since(epoch)) }

// policy keeps per-endpoint statistics keyed by address, so that they
// survive picker rebuilds (any endpoint changing state) and resolver
// updates (any instance changing). It is guarded by shard.Balancer's
// mutex.
type policy struct {
	cfg   *Config
	stats map[string]*stats
	clock func() int64
}

// Describe implements shard.Describer for the debug view: the decayed
// peak-EWMA latency and the calls in flight.
func (p *policy) Describe(addr string) map[string]string {
	s, ok := p.stats[addr]
	if !ok {
		return nil
	}
	return map[string]string{
		"ewma_ms":  strconv.FormatFloat(s.cost(p.clock(), float64(p.cfg.Decay))/1e6, 'f', 3, 64),
		"inflight": strconv.FormatInt(s.inflight.Load(), 10),
	}
}

func (p *policy) SetConfig(c serviceconfig.LoadBalancingConfig) error {
	if cfg, ok := c.(*Config); ok {
		p.cfg = cfg
	}
	return nil
}

func (p *policy) Picker(all, ready []shard.Endpoint) gbalancer.Picker {
	now := p.clock()
	tau := float64(p.cfg.Decay)
	// Forget endpoints that are gone from the resolver; keep the rest,
	// ready or not, so that a flapping endpoint keeps its history.
	live := make(map[string]bool, len(all))
	for _, e := range all {
		live[e.Addr] = true
	}
	var sum float64
	for addr, s := range p.stats {
		if !live[addr] {
			delete(p.stats, addr)
			continue
		}
		sum += s.cost(now, tau)
	}
	// A new endpoint starts at its peers' mean cost: starting at 0 would
	// send it every call until its first answer.
	seed := 0.0
	if len(p.stats) > 0 {
		seed = sum / float64(len(p.stats))
	}
	for _, e := range all {
		if _, ok := p.stats[e.Addr]; !ok {
			s := &stats{}
			s.costBits.Store(math.Float64bits(seed))
			s.stamp.Store(now)
			p.stats[e.Addr] = s
		}
	}
	if len(ready) == 0 {
		return nil
	}
	pk := &picker{
		eps:     make([]endpoint, len(ready)),
		tau:     tau,
		penalty: float64(*p.cfg.ErrorPenalty),
		clock:   p.clock,
	}
	for i, e := range ready {
		pk.eps[i] = endpoint{picker: e.Picker, stats: p.stats[e.Addr]}
	}
	return pk
}

// stats are one endpoint's load statistics. Picks read them without
// locks; mu only serialises the read-modify-write of an update.
type stats struct {
	inflight atomic.Int64
	startSum atomic.Int64  // sum of in-flight calls' start times, ns
	costBits atomic.Uint64 // float64 peak-EWMA latency, ns
	stamp    atomic.Int64  // time of the last cost update, ns
	mu       sync.Mutex
	_        [64]byte // keep hot counters of neighbours off this cache line
}

// cost returns the latency estimate at now: the stored peak EWMA decayed
// toward zero since its last update, so that an endpoint that stopped
// being picked because it was slow is tried again after a few decay
// periods.
func (s *stats) cost(now int64, tau float64) float64 {
	c := math.Float64frombits(s.costBits.Load())
	// Below tau/1000 the decay is under 0.1%: skip math.Exp on the hot
	// path, where the endpoint is busy and dt is small.
	if dt := float64(now - s.stamp.Load()); dt > tau*1e-3 {
		c *= math.Exp(-dt / tau)
	}
	return c
}

// load is the score P2C compares: latency times outstanding calls, where
// latency is at least the mean age of the calls still in flight, so that
// an endpoint that stalls looks slow before any call returns.
func (s *stats) load(now int64, tau float64) float64 {
	c := s.cost(now, tau)
	n := s.inflight.Load()
	if n > 0 { // a racing update can skew this one comparison, no more
		if age := float64(now - s.startSum.Load()/n); age > c {
			c = age
		}
	}
	return (c + 1) * float64(n+1)
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
	s.stamp.Store(now)
	s.mu.Unlock()
}

type endpoint struct {
	picker gbalancer.Picker
	stats  *stats
}

type picker struct {
	eps     []endpoint
	tau     float64
	penalty float64
	clock   func() int64
}

func (p *picker) Pick(info gbalancer.PickInfo) (gbalancer.PickResult, error) {
	now := p.clock()
	e := &p.eps[0]
	if n := len(p.eps); n > 1 {
		// Two distinct random endpoints; the less loaded one wins.
		i := rand.IntN(n)
		j := rand.IntN(n - 1)
		if j >= i {
			j++
		}
		a, b := &p.eps[i], &p.eps[j]
		if b.stats.load(now, p.tau) < a.stats.load(now, p.tau) {
			a = b
		}
		e = a
	}
	res, err := e.picker.Pick(info)
	if err != nil {
		return res, err
	}
	s := e.stats
	// startSum before inflight here, and the reverse in Done, so that a
	// racing reader errs toward a younger mean age, never an older one.
	s.startSum.Add(now)
	s.inflight.Add(1)
	childDone := res.Done
	res.Done = func(di gbalancer.DoneInfo) {
		end := p.clock()
		rtt := float64(end - now)
		if di.Err != nil && p.penalty > rtt && isFailure(di.Err) {
			rtt = p.penalty
		}
		s.observe(end, rtt, p.tau)
		s.inflight.Add(-1)
		s.startSum.Add(-now)
		if childDone != nil {
			childDone(di)
		}
	}
	return res, nil
}

// isFailure reports whether err says the endpoint is unwell rather than
// that the call was refused on its merits or abandoned by the caller.
func isFailure(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.ResourceExhausted, codes.DataLoss:
		return true
	}
	return false
}
