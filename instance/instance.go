package instance

import (
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/experimental/balancer/weight"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/ringhash"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// key is the attribute key under which an endpoint carries its
// registry.Instance. An unexported type keeps other packages' keys apart.
type key struct{}

// attr wraps an Instance so that it compares by value: grpc compares
// attributes with Equal when it decides whether an endpoint changed, and
// a map inside a plain value would panic there (etcd#19700), while a
// fresh pointer on every update would churn connections (grpc-go#3611).
type attr struct{ inst registry.Instance }

// Equal implements the comparison grpc's attributes package uses.
func (a attr) Equal(o any) bool {
	b, ok := o.(attr)
	return ok && a.inst.Equal(b.inst)
}

// Endpoint converts an instance into the endpoint the resolver hands to
// gRPC. The instance rides on the endpoint's attributes, where policies
// read it with FromEndpoint. grpc-go's own policies read two attributes
// set here too: the effective weight, through
// experimental/balancer/weight (ring_hash's share of the ring,
// pick_first's weighted shuffleAddressList), and the instance ID as the
// ring_hash key, through resolver/ringhash.SetHashKey, so that an
// instance keeps its place on the ring when it re-registers on another
// address. Equal instances give equal endpoints.
func Endpoint(inst registry.Instance) gresolver.Endpoint {
	ep := gresolver.Endpoint{
		Addresses:  []gresolver.Address{{Addr: inst.Address}},
		Attributes: attributes.New(key{}, attr{inst: inst.Clone()}),
	}
	ep = weight.Set(ep, weight.EndpointInfo{Weight: uint32(inst.EffectiveWeight())})
	return ringhash.SetHashKey(ep, inst.ID)
}

// Endpoints converts instances in order.
func Endpoints(insts []registry.Instance) []gresolver.Endpoint {
	out := make([]gresolver.Endpoint, len(insts))
	for i, inst := range insts {
		out[i] = Endpoint(inst)
	}
	return out
}

// FromEndpoint returns the instance an endpoint was made from, and false
// if it was not made by Endpoint.
func FromEndpoint(ep gresolver.Endpoint) (registry.Instance, bool) {
	a, ok := ep.Attributes.Value(key{}).(attr)
	if !ok {
		return registry.Instance{}, false
	}
	return a.inst, true
}
