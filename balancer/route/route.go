package route

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/lbconfig"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/wrrtable"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Name is the policy's registered name.
const Name = "wayfinder_route"

func init() {
	gbalancer.Register(lbconfig.Builder[*Config]{Policy: Name, Parse: ParseConfig, New: newBalancer})
}

type subsetKey struct{}

type callSubset struct {
	selector string
	strict   bool
}

// WithSubset routes the context's calls to the endpoints matching
// selector, falling back to all endpoints when none of them is ready.
// It overrides the target's configured subset.
func WithSubset(ctx context.Context, selector string) context.Context {
	return context.WithValue(ctx, subsetKey{}, callSubset{selector: selector})
}

// WithStrictSubset is WithSubset without the fallback: when no matching
// endpoint is ready the call fails with UNAVAILABLE.
func WithStrictSubset(ctx context.Context, selector string) context.Context {
	return context.WithValue(ctx, subsetKey{}, callSubset{selector: selector, strict: true})
}

// Config is the policy's service-config JSON.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// Subset selects the endpoints for calls that set none with
	// WithSubset, such as "version=v2" or "tag=canary,zone=eu-1a". Empty
	// selects all. See the package doc for the syntax.
	Subset string `json:"subset,omitempty"`
	// Strict makes calls fail, rather than fall back to all endpoints,
	// when no endpoint of the configured subset is ready.
	Strict bool `json:"strict,omitempty"`
}

// ParseConfig parses and validates js, applying defaults.
func ParseConfig(js json.RawMessage) (*Config, error) {
	cfg := &Config{}
	if err := lbconfig.Decode(Name, js, cfg); err != nil {
		return nil, err
	}
	if _, err := ParseSelector(cfg.Subset); err != nil {
		return nil, lbconfig.Invalid(Name, "subset", "%v", err)
	}
	return cfg, nil
}

// Selector is a parsed subset selector: conditions that must all hold.
type Selector []Cond

// Cond is one condition, key=value.
type Cond struct{ Key, Value string }

// ParseSelector parses "key=value,key=value". Keys: version, zone, id,
// tag (the instance has the tag), and meta.<name> (the metadata value).
func ParseSelector(s string) (Selector, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var sel Selector
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok || v == "":
			return nil, fmt.Errorf("selector %q: condition %q: want key=value", s, part)
		case k == "version" || k == "zone" || k == "id" || k == "tag":
		case strings.HasPrefix(k, "meta.") && len(k) > len("meta."):
		default:
			return nil, fmt.Errorf("selector %q: unknown key %q: want version, zone, id, tag or meta.<name>", s, k)
		}
		sel = append(sel, Cond{k, v})
	}
	return sel, nil
}

// Match reports whether inst satisfies every condition.
func (s Selector) Match(inst registry.Instance) bool {
	for _, c := range s {
		var ok bool
		switch c.Key {
		case "version":
			ok = inst.Version == c.Value
		case "zone":
			ok = inst.Zone == c.Value
		case "id":
			ok = inst.ID == c.Value
		case "tag":
			ok = slices.Contains(inst.Tags, c.Value)
		default:
			v, has := inst.Metadata[strings.TrimPrefix(c.Key, "meta.")]
			ok = has && v == c.Value
		}
		if !ok {
			return false
		}
	}
	return true
}

func newBalancer(cc gbalancer.ClientConn, opts gbalancer.BuildOptions, _ *Config) gbalancer.Balancer {
	return shard.New(cc, opts, &policy{cfg: &Config{}})
}

type policy struct{ cfg *Config }

func (p *policy) SetConfig(c serviceconfig.LoadBalancingConfig) error {
	if cfg, ok := c.(*Config); ok {
		p.cfg = cfg
	}
	return nil
}

func (p *policy) Picker(u *shard.Update) gbalancer.Picker {
	if len(u.Ready) == 0 {
		return nil
	}
	ready := slices.Clone(u.Ready) // the frame reuses its slice
	pk := &picker{ready: ready, def: callSubset{selector: p.cfg.Subset, strict: p.cfg.Strict}}
	all := make([]uint32, len(ready))
	for i := range all {
		all[i] = uint32(i)
	}
	pk.all = pk.newSet(all)
	pk.cache.Store(&map[string]*set{})
	return pk
}

// maxCached bounds the per-picker cache of subsets, since selectors may
// come from callers.
const maxCached = 64

// set is a weighted round robin over some of the ready endpoints.
type set struct {
	members []uint32 // indices into picker.ready
	table   *wrrtable.Table
	next    atomic.Uint64
	err     error // selector error, or nil
}

type picker struct {
	ready []*shard.Endpoint
	def   callSubset
	all   *set
	// cache maps selectors to their sets; it is copy-on-write, so reads
	// are a lock-free load and a map lookup.
	cache atomic.Pointer[map[string]*set]
}

func (p *picker) newSet(members []uint32) *set {
	s := &set{members: members}
	if len(members) > 0 {
		w := make([]uint32, len(members))
		for i, m := range members {
			w[i] = p.ready[m].Weight
		}
		s.table = wrrtable.Build(w)
		s.next.Store(rand.Uint64())
	}
	return s
}

func (p *picker) subset(selector string) *set {
	cache := *p.cache.Load()
	if s, ok := cache[selector]; ok {
		return s
	}
	var s *set
	sel, err := ParseSelector(selector)
	if err != nil {
		s = &set{err: status.Errorf(codes.Internal, "%s: %v", Name, err)}
	} else {
		var members []uint32
		for i := range p.ready {
			if sel.Match(p.ready[i].Instance) {
				members = append(members, uint32(i))
			}
		}
		s = p.newSet(members)
	}
	if len(cache) < maxCached {
		// Racing writers may drop each other's entries; they are rebuilt
		// on the next miss, so no lock is needed.
		next := make(map[string]*set, len(cache)+1)
		for k, v := range cache {
			next[k] = v
		}
		next[selector] = s
		p.cache.Store(&next)
	}
	return s
}

func (p *picker) Pick(info gbalancer.PickInfo) (gbalancer.PickResult, error) {
	want := p.def
	if cs, ok := info.Ctx.Value(subsetKey{}).(callSubset); ok {
		want = cs
	}
	s := p.all
	if want.selector != "" {
		s = p.subset(want.selector)
		if s.err != nil {
			return gbalancer.PickResult{}, s.err
		}
		if len(s.members) == 0 {
			if want.strict {
				return gbalancer.PickResult{}, status.Errorf(codes.Unavailable, "%s: no ready endpoint matches %q (strict)", Name, want.selector)
			}
			s = p.all
		}
	}
	m := s.members[s.table.At(s.next.Add(1))]
	return p.ready[m].Picker.Pick(info)
}
