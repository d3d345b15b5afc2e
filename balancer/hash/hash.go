package hash

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/lbconfig"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
	"github.com/wayfinder-rpc/wayfinder/internal/hashing"
)

// Name is the policy's registered name. It differs from grpc's
// "ring_hash", which takes its key from xDS.
const Name = "wayfinder_consistent_hash"

// Defaults and limits.
const (
	DefaultReplicas    = 100
	DefaultMaxRingSize = 1 << 18
)

func init() {
	gbalancer.Register(lbconfig.Builder[*Config]{Policy: Name, Parse: ParseConfig, New: newBalancer})
}

type keyCtx struct{}

// WithKey returns a context whose calls are routed by key: calls with
// the same key go to the same endpoint while it is ready.
func WithKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, keyCtx{}, key)
}

// KeyFromContext returns the key set by WithKey.
func KeyFromContext(ctx context.Context) (string, bool) {
	k, ok := ctx.Value(keyCtx{}).(string)
	return k, ok
}

// Config is the policy's service-config JSON.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// Header names an outgoing metadata header whose first value is the
	// key when the call's context has none from WithKey. Optional.
	Header string `json:"header,omitempty"`
	// Replicas is the number of ring points of an endpoint of average
	// weight; others get proportionally more or fewer (at least one).
	// More points spread keys more evenly. Default 100; range 1..1000.
	Replicas int `json:"replicas,omitempty"`
	// MaxRingSize caps the ring's points, scaling every endpoint's share
	// down to fit. Default 262144; range 1..8388608.
	MaxRingSize int `json:"maxRingSize,omitempty"`
	// LoadFactor, if set, bounds load (Mirrokni et al., "Consistent
	// Hashing with Bounded Loads"): an endpoint with more than
	// LoadFactor times the mean number of calls in flight is passed
	// over for the next one on the ring. 0 disables; else 1.0..100.
	LoadFactor float64 `json:"loadFactor,omitempty"`
	// MissingKey says what a call without a key does: "random" (default)
	// picks a random ready endpoint, "fail" fails the call with INTERNAL
	// (gRPC reserves INVALID_ARGUMENT for servers).
	MissingKey string `json:"missingKey,omitempty"`
}

// ParseConfig parses and validates js, applying defaults.
func ParseConfig(js json.RawMessage) (*Config, error) {
	cfg := &Config{Replicas: DefaultReplicas, MaxRingSize: DefaultMaxRingSize, MissingKey: "random"}
	if err := lbconfig.Decode(Name, js, cfg); err != nil {
		return nil, err
	}
	switch {
	case cfg.Header != strings.ToLower(cfg.Header) || strings.HasPrefix(cfg.Header, "grpc-") || strings.HasSuffix(cfg.Header, "-bin") || !validHeader(cfg.Header):
		return nil, lbconfig.Invalid(Name, "header", "%q is not a lowercase ASCII metadata key (no \"grpc-\" prefix, no \"-bin\" suffix)", cfg.Header)
	case cfg.Replicas < 1 || cfg.Replicas > 1000:
		return nil, lbconfig.Invalid(Name, "replicas", "%d is out of range 1..1000", cfg.Replicas)
	case cfg.MaxRingSize < 1 || cfg.MaxRingSize > 1<<23:
		return nil, lbconfig.Invalid(Name, "maxRingSize", "%d is out of range 1..8388608", cfg.MaxRingSize)
	case cfg.LoadFactor != 0 && !(cfg.LoadFactor >= 1 && cfg.LoadFactor <= 100):
		return nil, lbconfig.Invalid(Name, "loadFactor", "%v is out of range: 0 (unbounded) or 1..100", cfg.LoadFactor)
	case cfg.MissingKey != "random" && cfg.MissingKey != "fail":
		return nil, lbconfig.Invalid(Name, "missingKey", "%q: want \"random\" or \"fail\"", cfg.MissingKey)
	}
	return cfg, nil
}

func validHeader(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newBalancer(cc gbalancer.ClientConn, opts gbalancer.BuildOptions, cfg *Config) gbalancer.Balancer {
	return shard.New(cc, opts, &policy{cfg: cfg})
}

// policy keeps the ring, which depends only on the endpoints' addresses
// and weights and the config, up to date as they change (ringBuilder),
// so that connectivity changes (the frequent updates) rebuild only the
// small per-picker arrays. Guarded by shard.Balancer's mutex.
type policy struct {
	cfg   *Config
	rb    ringBuilder
	total atomic.Int64 // bounded load: calls in flight in all
}

func (p *policy) SetConfig(c serviceconfig.LoadBalancingConfig) error {
	if cfg, ok := c.(*Config); ok {
		p.cfg = cfg
	}
	return nil
}

func (p *policy) Picker(u *shard.Update) gbalancer.Picker {
	p.rb.apply(u, p.cfg.Replicas, p.cfg.MaxRingSize)
	p.rb.rebuild()
	if len(u.Ready) == 0 {
		return nil
	}
	n := len(p.rb.slots)
	pk := &picker{
		ring:       p.rb.ring,
		pickers:    make([]gbalancer.Picker, n),
		isReady:    make([]bool, n),
		ready:      make([]uint32, 0, len(u.Ready)),
		header:     p.cfg.Header,
		failNoKey:  p.cfg.MissingKey == "fail",
		loadFactor: p.cfg.LoadFactor,
	}
	if pk.loadFactor > 0 {
		pk.inflight = make([]*atomic.Int64, n)
		pk.total = &p.total
	}
	for _, e := range u.Ready {
		m := e.Data.(*member)
		i := m.cur.idx
		pk.pickers[i] = e.Picker
		pk.isReady[i] = true
		pk.ready = append(pk.ready, i)
		if pk.inflight != nil {
			pk.inflight[i] = &m.inflight
		}
	}
	return pk
}

type picker struct {
	ring       *ring
	pickers    []gbalancer.Picker // by owner index
	isReady    []bool             // by owner index
	ready      []uint32           // owner indices of ready endpoints
	header     string
	failNoKey  bool
	loadFactor float64
	inflight   []*atomic.Int64 // by owner index; nil unless bounded
	total      *atomic.Int64
}

// INTERNAL: gRPC reserves INVALID_ARGUMENT for servers (gRFC A54).
var errNoKey = status.Error(codes.Internal, Name+": the call has no hash key: set one with hash.WithKey or the configured header")

func (p *picker) Pick(info gbalancer.PickInfo) (gbalancer.PickResult, error) {
	key, ok := KeyFromContext(info.Ctx)
	if !ok && p.header != "" {
		if v := metadata.ValueFromOutgoingContext(info.Ctx, p.header); len(v) > 0 {
			key, ok = v[0], true
		}
	}
	var m uint32
	switch {
	case ok:
		m = p.lookup(hashString(key))
	case p.failNoKey:
		return gbalancer.PickResult{}, errNoKey
	default:
		m = p.ready[rand.IntN(len(p.ready))]
	}
	res, err := p.pickers[m].Pick(info)
	if err != nil || p.inflight == nil {
		return res, err
	}
	c, total := p.inflight[m], p.total
	c.Add(1)
	total.Add(1)
	childDone := res.Done
	res.Done = func(di gbalancer.DoneInfo) {
		c.Add(-1)
		total.Add(-1)
		if childDone != nil {
			childDone(di)
		}
	}
	return res, nil
}

// lookup walks the ring clockwise from h to the first ready member, and,
// with bounded load, the first one under its load limit.
func (p *picker) lookup(h uint64) uint32 {
	r := p.ring
	i, n := r.search(h), len(r.owners)
	limit := int64(math.MaxInt64)
	if p.inflight != nil {
		limit = int64(math.Ceil(p.loadFactor * float64(p.total.Load()+1) / float64(len(p.ready))))
	}
	first := uint32(math.MaxUint32)
	for range n {
		o := r.owners[i]
		if p.isReady[o] {
			if p.inflight == nil || p.inflight[o].Load() < limit {
				return o
			}
			if first == math.MaxUint32 {
				first = o
			}
		}
		if i++; i == n {
			i = 0
		}
	}
	if first == math.MaxUint32 { // unreachable: a picker has a ready member
		return p.ready[0]
	}
	return first
}

// mixPoint mixes a ring point's seed.
func mixPoint(x uint64) uint64 { return hashing.Mix(x) }

// hashString is FNV-1a finished with murmur3's fmix64: fixed across
// processes (unlike hash/maphash), so every client maps a key to the
// same endpoint, and well mixed for ring placement.
func hashString(s string) uint64 { return hashing.String(s) }
