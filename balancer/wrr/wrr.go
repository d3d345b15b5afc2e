package wrr

import (
	"encoding/json"
	"math/rand/v2"
	"sync/atomic"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/lbconfig"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/orcaweight"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/wrrtable"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Name is the policy's registered name. It differs from grpc's
// "weighted_round_robin", which weighs by ORCA load reports instead.
const Name = "wayfinder_weighted_round_robin"

func init() {
	gbalancer.Register(lbconfig.Builder[*Config]{Policy: Name, Parse: ParseConfig, New: newBalancer})
}

// Config is the policy's service-config JSON.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// DefaultWeight is the weight of an instance registered with weight 0
	// (no weight) and of endpoints that carry no weight. Default 1, as
	// registry.DefaultWeight; range 1..registry.MaxWeight.
	DefaultWeight int `json:"defaultWeight,omitempty"`

	// LoadReports, if set, blends ORCA load reports with the registry
	// weight (see the package doc, "Load reports"); {} takes the
	// defaults. Off when absent.
	LoadReports *orcaweight.Config `json:"loadReports,omitempty"`
}

// ParseConfig parses and validates js, applying defaults.
func ParseConfig(js json.RawMessage) (*Config, error) {
	cfg := &Config{DefaultWeight: registry.DefaultWeight}
	if err := lbconfig.Decode(Name, js, cfg); err != nil {
		return nil, err
	}
	if cfg.DefaultWeight < 1 || cfg.DefaultWeight > registry.MaxWeight {
		return nil, lbconfig.Invalid(Name, "defaultWeight", "%d is out of range 1..%d", cfg.DefaultWeight, int(registry.MaxWeight))
	}
	if cfg.LoadReports != nil {
		if err := cfg.LoadReports.Validate(Name); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

func newBalancer(cc gbalancer.ClientConn, opts gbalancer.BuildOptions, _ *Config) gbalancer.Balancer {
	p := &policy{cfg: &Config{DefaultWeight: registry.DefaultWeight}, clock: orcaweight.SystemClock}
	return &balancer{Balancer: shard.New(cc, opts, p), p: p}
}

// balancer stops the policy's load-report ticker when it closes.
type balancer struct {
	*shard.Balancer
	p *policy
}

func (b *balancer) Close() {
	b.Balancer.Close()
	b.p.orca.Close()
}

// policy holds the config; it is guarded by shard.Balancer's mutex, but
// for the load-report state (orca.go), which has a mutex of its own.
type policy struct {
	cfg   *Config
	clock orcaweight.Clock
	orca  orcaweight.State
}

func (p *policy) SetConfig(c serviceconfig.LoadBalancingConfig) error {
	if cfg, ok := c.(*Config); ok {
		p.cfg = cfg
		p.orca.Set(cfg.LoadReports, p.clock)
	}
	return nil
}

func (p *policy) Picker(u *shard.Update) gbalancer.Picker {
	if p.cfg.LoadReports != nil || p.orca.On() {
		return p.orcaPicker(u)
	}
	ready := u.Ready
	if len(ready) == 0 {
		return nil
	}
	weights := make([]uint32, len(ready))
	pickers := make([]gbalancer.Picker, len(ready))
	for i, e := range ready {
		weights[i] = e.Weight
		if e.Unweighted {
			weights[i] = uint32(p.cfg.DefaultWeight)
		}
		pickers[i] = e.Picker
	}
	pk := &picker{table: wrrtable.Build(weights), pickers: pickers}
	// A random start keeps many clients that rebuild at once from all
	// sending their next call to the same endpoint.
	pk.next.Store(rand.Uint64())
	return pk
}

// picker is immutable but for its counter: one atomic add per pick.
type picker struct {
	table   *wrrtable.Table
	pickers []gbalancer.Picker
	// next is written by every pick; the padding keeps it off the cache
	// line of the fields above, which every pick on every core reads.
	_    [64]byte
	next atomic.Uint64
}

func (p *picker) Pick(info gbalancer.PickInfo) (gbalancer.PickResult, error) {
	return p.pickers[p.table.At(p.next.Add(1))].Pick(info)
}
