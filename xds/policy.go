package xds

import (
	"fmt"
	"strings"

	xdstypepb "github.com/cncf/xds/go/xds/type/v3"
	clusterpb "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	leastrequestpb "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	roundrobinpb "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	wrrlocalitypb "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/wrr_locality/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Policy is a load-balancing policy for a service's endpoints, by its
// gRPC name: "round_robin", "least_request" (gRFC A48; Config
// "choiceCount", default 2), or any other policy a client may have
// registered, such as Wayfinder's "wayfinder_p2c_ewma", sent as a custom
// policy (gRFC A52) whose Config is the policy's JSON config.
type Policy struct {
	Name   string
	Config map[string]any
}

// WithPolicy sets service's endpoint-picking policies, in order of
// preference: each client uses the first it supports, and round_robin
// always comes last, so that a client that supports none of them (or an
// older one that reads only the cluster's lb_policy, such as Python's
// grpcio 1.51) still balances. Localities keep their weights (the list
// sits under wrr_locality). The default is round_robin alone.
func WithPolicy(service string, policies ...Policy) Option {
	return func(o *options) {
		if err := validService(service); err != nil {
			o.invalid = append(o.invalid, fmt.Errorf("xds: policy: %w", err))
			return
		}
		lbp, err := lbPolicy(policies)
		if err != nil {
			o.invalid = append(o.invalid, fmt.Errorf("xds: policy of %q: %w", service, err))
			return
		}
		if o.policy == nil {
			o.policy = map[string]*clusterpb.LoadBalancingPolicy{}
		}
		o.policy[service] = lbp
	}
}

// lbPolicy builds a cluster's load_balancing_policy: wrr_locality over
// the policies given, then round_robin.
func lbPolicy(policies []Policy) (*clusterpb.LoadBalancingPolicy, error) {
	var pick clusterpb.LoadBalancingPolicy
	for _, p := range append(policies, Policy{Name: "round_robin"}) {
		var m proto.Message
		switch p.Name {
		case "":
			return nil, fmt.Errorf("a policy with no name")
		case "round_robin":
			if len(p.Config) > 0 {
				return nil, fmt.Errorf("round_robin takes no config")
			}
			m = &roundrobinpb.RoundRobin{}
		case "least_request":
			lr := &leastrequestpb.LeastRequest{}
			for k, v := range p.Config {
				n, ok := v.(int)
				if k != "choiceCount" || !ok || n < 2 {
					return nil, fmt.Errorf("least_request: config %q: %v: want choiceCount, an int of at least 2", k, v)
				}
				lr.ChoiceCount = wrapperspb.UInt32(uint32(n))
			}
			m = lr
		default:
			if strings.ContainsAny(p.Name, "/ ") {
				return nil, fmt.Errorf("policy name %q", p.Name)
			}
			cfg, err := structpb.NewStruct(p.Config)
			if err != nil {
				return nil, fmt.Errorf("%s: config: %w", p.Name, err)
			}
			m = &xdstypepb.TypedStruct{TypeUrl: "type.googleapis.com/" + p.Name, Value: cfg}
		}
		a, err := anypb.New(m)
		if err != nil {
			return nil, err
		}
		pick.Policies = append(pick.Policies, &clusterpb.LoadBalancingPolicy_Policy{
			TypedExtensionConfig: &corepb.TypedExtensionConfig{Name: p.Name, TypedConfig: a},
		})
	}
	wrr, err := anypb.New(&wrrlocalitypb.WrrLocality{EndpointPickingPolicy: &pick})
	if err != nil {
		return nil, err
	}
	return &clusterpb.LoadBalancingPolicy{Policies: []*clusterpb.LoadBalancingPolicy_Policy{{
		TypedExtensionConfig: &corepb.TypedExtensionConfig{Name: "wrr_locality", TypedConfig: wrr},
	}}}, nil
}
