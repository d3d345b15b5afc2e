package custom

import (
	"context"
	"encoding/json"
	"fmt"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/lbconfig"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Endpoint is a ready endpoint offered to a choice function.
type Endpoint struct {
	// Address is the endpoint's address, host:port.
	Address string
	// Instance is the registry instance behind the endpoint: its ID,
	// zone, version, tags and metadata. It is zero for endpoints not made
	// by Wayfinder's resolver.
	Instance registry.Instance
	// Weight is the instance's effective weight, never 0.
	Weight int
}

// Call describes the call being placed.
type Call struct {
	// Ctx is the call's context: read values set by the caller, outgoing
	// metadata, the deadline.
	Ctx context.Context
	// Method is the full method name, "/package.Service/Method".
	Method string
}

// PickFunc chooses an endpoint for a call: it returns an index into
// ready, which is never empty. An error fails the call; return a status
// error to choose its code (gRPC turns the codes it reserves for itself,
// such as INVALID_ARGUMENT or FAILED_PRECONDITION, into INTERNAL; see
// gRFC A54), or ErrNoChoice to make the call wait, until
// its deadline, for the endpoints to change.
//
// It runs on every call, concurrently: it must not block, and should not
// allocate. ready is shared by calls and must not be changed.
type PickFunc func(call Call, ready []Endpoint) (int, error)

// BuildFunc is called, off the pick path, whenever the set of ready
// endpoints or their attributes change; the PickFunc it returns serves
// calls until the next change. Use it to precompute what PickFunc needs,
// such as an index by zone.
type BuildFunc func(ready []Endpoint) PickFunc

// ErrNoChoice, returned by a PickFunc, says no endpoint suits the call
// now; gRPC holds the call until the endpoints change or its deadline.
var ErrNoChoice = gbalancer.ErrNoSubConnAvailable

// Register registers pick as the gRPC policy name, selectable in service
// configs as {"loadBalancingConfig":[{"<name>":{}}]}. Call it from init,
// as gRPC requires of policies. It panics if name is not lowercase
// snake_case or is already registered, as both are programming errors.
func Register(name string, pick PickFunc) {
	RegisterBuilder(name, func([]Endpoint) PickFunc { return pick })
}

// RegisterBuilder is Register for a choice that precomputes per set of
// endpoints.
func RegisterBuilder(name string, build BuildFunc) {
	gbalancer.Register(NewBuilder(name, build))
}

// NewBuilder returns the grpc balancer.Builder for build without
// registering it, for callers that register it themselves.
func NewBuilder(name string, build BuildFunc) gbalancer.Builder {
	if !snakeCase(name) {
		panic(fmt.Sprintf("custom: policy name %q is not lowercase snake_case", name))
	}
	if gbalancer.Get(name) != nil {
		panic(fmt.Sprintf("custom: policy name %q is already registered", name))
	}
	return &builder{name: name, build: build}
}

func snakeCase(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

type builder struct {
	name  string
	build BuildFunc
}

type config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`
}

func (b *builder) Name() string { return b.name }

// ParseConfig accepts only an empty object: a PickFunc takes no config.
func (b *builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	cfg := &config{}
	if err := lbconfig.Decode(b.name, js, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (b *builder) Build(cc gbalancer.ClientConn, opts gbalancer.BuildOptions) gbalancer.Balancer {
	return shard.New(cc, opts, &policy{name: b.name, build: b.build})
}

type policy struct {
	name  string
	build BuildFunc
}

func (p *policy) SetConfig(serviceconfig.LoadBalancingConfig) error { return nil }

func (p *policy) Picker(u *shard.Update) gbalancer.Picker {
	ready := u.Ready
	if len(ready) == 0 {
		return nil
	}
	pk := &picker{name: p.name, eps: make([]Endpoint, len(ready)), pickers: make([]gbalancer.Picker, len(ready))}
	for i, e := range ready {
		pk.eps[i] = Endpoint{Address: e.Addr, Instance: e.Instance, Weight: int(e.Weight)}
		pk.pickers[i] = e.Picker
	}
	pk.pick = safeBuild(p.name, p.build, pk.eps)
	return pk
}

// safeBuild keeps a panicking BuildFunc from taking the ClientConn down:
// every call then fails with INTERNAL until the next update.
func safeBuild(name string, build BuildFunc, eps []Endpoint) (pick PickFunc) {
	defer func() {
		if r := recover(); r != nil {
			err := status.Errorf(codes.Internal, "%s: build panicked: %v", name, r)
			pick = func(Call, []Endpoint) (int, error) { return 0, err }
		}
	}()
	if pick = build(eps); pick == nil {
		err := status.Errorf(codes.Internal, "%s: build returned a nil PickFunc", name)
		pick = func(Call, []Endpoint) (int, error) { return 0, err }
	}
	return pick
}

type picker struct {
	name    string
	pick    PickFunc
	eps     []Endpoint
	pickers []gbalancer.Picker
}

func (p *picker) Pick(info gbalancer.PickInfo) (res gbalancer.PickResult, err error) {
	// A panic in user code fails the call, not the process.
	defer func() {
		if r := recover(); r != nil {
			err = status.Errorf(codes.Internal, "%s: pick panicked: %v", p.name, r)
		}
	}()
	i, err := p.pick(Call{Ctx: info.Ctx, Method: info.FullMethodName}, p.eps)
	if err != nil {
		return gbalancer.PickResult{}, err
	}
	if i < 0 || i >= len(p.pickers) {
		return gbalancer.PickResult{}, status.Errorf(codes.Internal, "%s: pick returned index %d of %d endpoints", p.name, i, len(p.pickers))
	}
	return p.pickers[i].Pick(info)
}
