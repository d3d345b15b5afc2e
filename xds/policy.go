package xds

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	xdstypepb "github.com/cncf/xds/go/xds/type/v3"
	clusterpb "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	cswrrpb "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/client_side_weighted_round_robin/v3"
	leastrequestpb "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	ringhashpb "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
	roundrobinpb "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	wrrlocalitypb "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/wrr_locality/v3"
	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Policy is a load-balancing policy for a service's endpoints, by its
// gRPC name: "round_robin", "least_request" (gRFC A48; Config
// "choiceCount", default 2), "ring_hash" (gRFC A42; no Config: clients
// use their default ring sizes; see WithHashHeader),
// "weighted_round_robin" (gRFC A58; see below), or any
// other policy a client may have registered, such as Wayfinder's
// "wayfinder_weighted_round_robin" or "wayfinder_p2c_ewma", sent as a
// custom policy (gRFC A52) whose Config is the policy's JSON config
// (time.Duration values are sent as strings such as "10s"). Only Go
// clients that import the policy's package run it (see policies.go);
// the others use the next policy they know.
//
// weighted_round_robin weighs each endpoint by the ORCA load reports in
// its calls' trailers: rps_fractional / utilization
// (application_utilization, else cpu_utilization), so registry weights
// play no part. A server built with server.WithLoadReports() sends the
// reports, with rps_fractional and eps measured from its calls (or the
// application's LoadReports().SetQPS); an endpoint whose reports lack a
// rate gets the mean weight. Its Config keys
// are those of gRPC's JSON config: blackoutPeriod,
// weightExpirationPeriod, weightUpdatePeriod, oobReportingPeriod
// (time.Duration values or strings such as "10s"), enableOobLoadReport
// (bool) and errorUtilizationPenalty (a number).
type Policy struct {
	Name   string
	Config map[string]any
}

// servicePolicy is what a service's cluster and route carry beyond the
// defaults.
type servicePolicy struct {
	lb         *clusterpb.LoadBalancingPolicy
	ringHash   bool // lb's first policy is ring_hash
	outlier    *clusterpb.OutlierDetection
	hashHeader string
	route      *routeAction // timeout and retries; nil for none
}

func (o *options) servicePolicy(service string) *servicePolicy {
	if o.policy == nil {
		o.policy = map[string]*servicePolicy{}
	}
	p := o.policy[service]
	if p == nil {
		p = &servicePolicy{}
		o.policy[service] = p
	}
	return p
}

// WithPolicy sets service's endpoint-picking policies, in order of
// preference: each client uses the first it supports, and round_robin
// always comes last, so that a client that supports none of them (or an
// older one that reads only the cluster's lb_policy, such as Python's
// grpcio 1.51) still balances. Localities keep their weights (the list
// sits under wrr_locality). The default is round_robin alone.
//
// ring_hash, if given, must come first: it places every endpoint of
// every locality on one ring, so it is sent on its own, before
// wrr_locality over the others. The cluster's lb_policy stays
// ROUND_ROBIN, since Python's grpcio 1.51, which reads only that, crashes
// on RING_HASH; so Python clients of that age round-robin. Which endpoint a call goes to is the
// hash of the header WithHashHeader names (a call without it, or a
// service without WithHashHeader, gets a random hash).
func WithPolicy(service string, policies ...Policy) Option {
	return func(o *options) {
		if err := validService(service); err != nil {
			o.invalid = append(o.invalid, fmt.Errorf("xds: policy: %w", err))
			return
		}
		lbp, rh, err := lbPolicy(policies)
		if err != nil {
			o.invalid = append(o.invalid, fmt.Errorf("xds: policy of %q: %w", service, err))
			return
		}
		p := o.servicePolicy(service)
		p.lb, p.ringHash = lbp, rh
	}
}

// WithHashHeader makes service's route hash each call on the value of
// its request header header (gRFC A42), for a ring_hash policy (see
// WithPolicy): calls with the same value go to the same endpoint while
// the endpoints stay the same. header is a lowercase header name,
// neither a gRPC reserved name ("grpc-..."), a pseudo-header (":...")
// nor a binary one ("...-bin"), which clients never hash on.
func WithHashHeader(service, header string) Option {
	return func(o *options) {
		if err := validService(service); err != nil {
			o.invalid = append(o.invalid, fmt.Errorf("xds: hash header: %w", err))
			return
		}
		if err := validHeader(header); err != nil {
			o.invalid = append(o.invalid, fmt.Errorf("xds: hash header of %q: %w", service, err))
			return
		}
		o.servicePolicy(service).hashHeader = header
	}
}

func validHeader(h string) error {
	switch {
	case h == "":
		return fmt.Errorf("an empty header name")
	case strings.HasPrefix(h, "grpc-"), strings.HasSuffix(h, "-bin"):
		return fmt.Errorf("header %q: gRPC clients never hash on grpc-* or *-bin headers", h)
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.!#$%&'*+^`|~", r)) {
			return fmt.Errorf("header %q: want a lowercase HTTP header name", h)
		}
	}
	return nil
}

// OutlierDetection configures a service's outlier detection (gRFC A50):
// each client counts its calls' outcomes per endpoint and, every
// Interval, ejects (stops picking, for a time) the endpoints that fail
// more than the others. At least one of the two algorithms must be on:
// FailurePercent or SuccessRateStdevFactor. A zero duration or count is
// its default.
type OutlierDetection struct {
	Interval           time.Duration // between ejection sweeps; default 10s
	BaseEjectionTime   time.Duration // an ejection lasts this times the endpoint's ejections so far; default 30s
	MaxEjectionTime    time.Duration // the longest ejection; default 300s (at least BaseEjectionTime)
	MaxEjectionPercent int           // the most of the endpoints ejected at once, 1 to 100; default 10

	// Failure percentage: an endpoint whose calls failed FailurePercent
	// percent of the time or more (1 to 100; 0 turns it off) is
	// ejected, once FailureMinimumHosts endpoints (default 5) have had
	// FailureRequestVolume calls each (default 50) in the interval.
	FailurePercent       int
	FailureMinimumHosts  int
	FailureRequestVolume int

	// Success rate: an endpoint whose success rate is below the mean by
	// more than SuccessRateStdevFactor/1000 standard deviations (1900
	// for 1.9; 0 turns it off) is ejected, once SuccessRateMinimumHosts
	// endpoints (default 5) have had SuccessRateRequestVolume calls each
	// (default 100) in the interval.
	SuccessRateStdevFactor   int
	SuccessRateMinimumHosts  int
	SuccessRateRequestVolume int
}

// WithOutlierDetection sends service's clusters with outlier detection
// (the cluster's outlier_detection field, gRFC A50). Clients that do not
// implement it ignore it and balance as if it were not there.
func WithOutlierDetection(service string, od OutlierDetection) Option {
	return func(o *options) {
		if err := validService(service); err != nil {
			o.invalid = append(o.invalid, fmt.Errorf("xds: outlier detection: %w", err))
			return
		}
		pb, err := od.proto()
		if err != nil {
			o.invalid = append(o.invalid, fmt.Errorf("xds: outlier detection of %q: %w", service, err))
			return
		}
		o.servicePolicy(service).outlier = pb
	}
}

func (od OutlierDetection) proto() (*clusterpb.OutlierDetection, error) {
	interval := cmp.Or(od.Interval, 10*time.Second)
	base := cmp.Or(od.BaseEjectionTime, 30*time.Second)
	maxT := cmp.Or(od.MaxEjectionTime, max(300*time.Second, base))
	maxPct := cmp.Or(od.MaxEjectionPercent, 10)
	switch {
	case od.Interval < 0 || od.BaseEjectionTime < 0 || od.MaxEjectionTime < 0:
		return nil, fmt.Errorf("a negative duration")
	case maxT < base:
		return nil, fmt.Errorf("MaxEjectionTime %v is less than BaseEjectionTime %v", maxT, base)
	case maxPct < 1 || maxPct > 100:
		return nil, fmt.Errorf("MaxEjectionPercent %d: want 1 to 100", od.MaxEjectionPercent)
	case od.FailurePercent < 0 || od.FailurePercent > 100:
		return nil, fmt.Errorf("FailurePercent %d: want 0 (off) to 100", od.FailurePercent)
	case od.SuccessRateStdevFactor < 0:
		return nil, fmt.Errorf("SuccessRateStdevFactor %d: want 0 (off) or more", od.SuccessRateStdevFactor)
	case od.FailurePercent == 0 && od.SuccessRateStdevFactor == 0:
		return nil, fmt.Errorf("neither FailurePercent nor SuccessRateStdevFactor: nothing would be ejected")
	}
	for _, n := range []int{od.FailureMinimumHosts, od.FailureRequestVolume, od.SuccessRateMinimumHosts, od.SuccessRateRequestVolume, od.SuccessRateStdevFactor} {
		if n < 0 || n > math.MaxUint32 {
			return nil, fmt.Errorf("a count of %d: want 0 (the default) to %d", n, uint32(math.MaxUint32))
		}
	}
	u32 := func(v int) *wrapperspb.UInt32Value { return wrapperspb.UInt32(uint32(v)) }
	pb := &clusterpb.OutlierDetection{
		Interval:           durationpb.New(interval),
		BaseEjectionTime:   durationpb.New(base),
		MaxEjectionTime:    durationpb.New(maxT),
		MaxEjectionPercent: u32(maxPct),
		// Envoy's defaults turn success rate on and failure percentage
		// off; here each is on when its threshold is set.
		EnforcingSuccessRate:       u32(0),
		EnforcingFailurePercentage: u32(0),
	}
	if od.FailurePercent > 0 {
		pb.EnforcingFailurePercentage = u32(100)
		pb.FailurePercentageThreshold = u32(od.FailurePercent)
		pb.FailurePercentageMinimumHosts = u32(cmp.Or(od.FailureMinimumHosts, 5))
		pb.FailurePercentageRequestVolume = u32(cmp.Or(od.FailureRequestVolume, 50))
	}
	if od.SuccessRateStdevFactor > 0 {
		pb.EnforcingSuccessRate = u32(100)
		pb.SuccessRateStdevFactor = u32(od.SuccessRateStdevFactor)
		pb.SuccessRateMinimumHosts = u32(cmp.Or(od.SuccessRateMinimumHosts, 5))
		pb.SuccessRateRequestVolume = u32(cmp.Or(od.SuccessRateRequestVolume, 100))
	}
	return pb, nil
}

// lbPolicy builds a cluster's load_balancing_policy: wrr_locality over
// the policies given, then round_robin; or, when the first is ring_hash,
// ring_hash and then wrr_locality over the rest.
func lbPolicy(policies []Policy) (*clusterpb.LoadBalancingPolicy, bool, error) {
	var top clusterpb.LoadBalancingPolicy
	ring := false
	if len(policies) > 0 && policies[0].Name == "ring_hash" {
		// No ring sizes: grpc-js-xds 1.14 rejects a RingHash with any
		// (it reads the UInt64Value as a string), so every client
		// uses its defaults (1024 to 4096 entries, gRFC A42).
		if len(policies[0].Config) > 0 {
			return nil, false, fmt.Errorf("ring_hash takes no config")
		}
		if err := appendPolicy(&top, "ring_hash", &ringhashpb.RingHash{HashFunction: ringhashpb.RingHash_XX_HASH}); err != nil {
			return nil, false, err
		}
		ring = true
		policies = policies[1:]
	}
	var pick clusterpb.LoadBalancingPolicy
	for _, p := range append(policies, Policy{Name: "round_robin"}) {
		var m proto.Message
		switch p.Name {
		case "":
			return nil, false, fmt.Errorf("a policy with no name")
		case "ring_hash":
			return nil, false, fmt.Errorf("ring_hash must come first")
		case "round_robin":
			if len(p.Config) > 0 {
				return nil, false, fmt.Errorf("round_robin takes no config")
			}
			m = &roundrobinpb.RoundRobin{}
		case "least_request":
			lr := &leastrequestpb.LeastRequest{}
			for k, v := range p.Config {
				n, ok := v.(int)
				if k != "choiceCount" || !ok || n < 2 {
					return nil, false, fmt.Errorf("least_request: config %q: %v: want choiceCount, an int of at least 2", k, v)
				}
				lr.ChoiceCount = wrapperspb.UInt32(uint32(n))
			}
			m = lr
		case "weighted_round_robin":
			w, err := weightedRoundRobin(p.Config)
			if err != nil {
				return nil, false, fmt.Errorf("weighted_round_robin: %w", err)
			}
			m = w
		default:
			ts, err := customPolicy(p)
			if err != nil {
				return nil, false, err
			}
			m = ts
		}
		if err := appendPolicy(&pick, p.Name, m); err != nil {
			return nil, false, err
		}
	}
	if err := appendPolicy(&top, "wrr_locality", &wrrlocalitypb.WrrLocality{EndpointPickingPolicy: &pick}); err != nil {
		return nil, false, err
	}
	return &top, ring, nil
}

// weightedRoundRobin returns the config of gRPC's weighted_round_robin
// (gRFC A58): client_side_weighted_round_robin, from config keys named as
// in gRPC's JSON config; durations are time.Duration values or strings
// such as "10s".
func weightedRoundRobin(config map[string]any) (*cswrrpb.ClientSideWeightedRoundRobin, error) {
	w := &cswrrpb.ClientSideWeightedRoundRobin{}
	durations := map[string]**durationpb.Duration{
		"blackoutPeriod":         &w.BlackoutPeriod,
		"weightExpirationPeriod": &w.WeightExpirationPeriod,
		"weightUpdatePeriod":     &w.WeightUpdatePeriod,
		"oobReportingPeriod":     &w.OobReportingPeriod,
	}
	for k, v := range config {
		if f, ok := durations[k]; ok {
			d, ok := v.(time.Duration)
			if s, isString := v.(string); isString {
				var err error
				d, err = time.ParseDuration(s)
				ok = err == nil
			}
			if !ok || d < 0 {
				return nil, fmt.Errorf("config %q: %v: want a duration of 0 or more", k, v)
			}
			*f = durationpb.New(d)
			continue
		}
		switch k {
		case "enableOobLoadReport":
			b, ok := v.(bool)
			if !ok {
				return nil, fmt.Errorf("config %q: %v: want true or false", k, v)
			}
			w.EnableOobLoadReport = wrapperspb.Bool(b)
		case "errorUtilizationPenalty":
			var f float64
			switch n := v.(type) {
			case int:
				f = float64(n)
			case float64:
				f = n
			default:
				return nil, fmt.Errorf("config %q: %v: want a number", k, v)
			}
			if f < 0 || f > math.MaxFloat32 {
				return nil, fmt.Errorf("config %q: %v: want a number of 0 or more", k, v)
			}
			w.ErrorUtilizationPenalty = wrapperspb.Float(float32(f))
		default:
			return nil, fmt.Errorf("config %q: want blackoutPeriod, weightExpirationPeriod, weightUpdatePeriod, oobReportingPeriod, enableOobLoadReport or errorUtilizationPenalty", k)
		}
	}
	return w, nil
}

// customPolicy returns p as a custom policy (gRFC A52): a TypedStruct
// whose type URL ends in p's name and whose value is p's config, which a
// gRPC client turns into the policy's JSON config. time.Duration values
// are sent as strings such as "10s", the form gRPC's JSON configs use.
//
// A policy registered with gRPC in this process (Wayfinder's own are,
// see policies.go) must accept that JSON, exactly as a client will read
// it: a config its parser refuses would make every client that has the
// policy reject the whole cluster (NACK).
func customPolicy(p Policy) (*xdstypepb.TypedStruct, error) {
	if strings.ContainsAny(p.Name, "/ ") {
		return nil, fmt.Errorf("policy name %q", p.Name)
	}
	fields := make(map[string]any, len(p.Config))
	for k, v := range p.Config {
		if d, ok := v.(time.Duration); ok {
			v = d.String()
		}
		fields[k] = v
	}
	cfg, err := structpb.NewStruct(fields)
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", p.Name, err)
	}
	if parser, ok := gbalancer.Get(p.Name).(gbalancer.ConfigParser); ok {
		// As grpc-go's xDS client converts it (xdslbregistry/converter).
		js, err := json.Marshal(cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: config: %w", p.Name, err)
		}
		if _, err := parser.ParseConfig(js); err != nil {
			return nil, fmt.Errorf("config %s: %w", js, err) // err names the policy
		}
	}
	return &xdstypepb.TypedStruct{TypeUrl: "type.googleapis.com/" + p.Name, Value: cfg}, nil
}

func appendPolicy(lbp *clusterpb.LoadBalancingPolicy, name string, m proto.Message) error {
	a, err := anypb.New(m)
	if err != nil {
		return err
	}
	lbp.Policies = append(lbp.Policies, &clusterpb.LoadBalancingPolicy_Policy{
		TypedExtensionConfig: &corepb.TypedExtensionConfig{Name: name, TypedConfig: a},
	})
	return nil
}

// header returns the header p hashes on, "" for none (or no p).
func (p *servicePolicy) header() string {
	if p == nil {
		return ""
	}
	return p.hashHeader
}

// routeAction returns what p adds to its service's route action (nil:
// nothing).
func (p *servicePolicy) routeAction() *routeAction {
	if p == nil {
		return nil
	}
	return p.route
}
