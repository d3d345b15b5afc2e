package resolver

import (
	"slices"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/experimental/balancer/weight"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/ringhash"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// instanceKey is the attribute key under which an endpoint carries its
// registry.Instance. An unexported type keeps other packages' keys apart.
type instanceKey struct{}

// instanceAttr wraps an Instance so that it compares by value: grpc
// compares attributes with Equal when it decides whether an endpoint
// changed, and a map inside a plain value would panic there (etcd#19700),
// while a fresh pointer on every update would churn connections
// (grpc-go#3611).
type instanceAttr struct{ inst registry.Instance }

// Equal implements the comparison grpc's attributes package uses.
func (a instanceAttr) Equal(o any) bool {
	b, ok := o.(instanceAttr)
	return ok && a.inst.Equal(b.inst)
}

// Endpoint converts an instance into the endpoint the resolver hands to
// gRPC. The instance rides on the endpoint's attributes, where balancers
// read it with InstanceFromEndpoint. grpc-go's own policies read two
// attributes set here too: the effective weight, through
// experimental/balancer/weight (ring_hash's share of the ring,
// pick_first's weighted shuffleAddressList), and the instance ID as the
// ring_hash key, through resolver/ringhash.SetHashKey, so that an
// instance keeps its place on the ring when it re-registers on another
// address. Equal instances give equal endpoints.
func Endpoint(inst registry.Instance) gresolver.Endpoint {
	ep := gresolver.Endpoint{
		Addresses:  []gresolver.Address{{Addr: inst.Address}},
		Attributes: attributes.New(instanceKey{}, instanceAttr{inst: inst.Clone()}),
	}
	ep = weight.Set(ep, weight.EndpointInfo{Weight: uint32(inst.EffectiveWeight())})
	return ringhash.SetHashKey(ep, inst.ID)
}

// InstanceFromEndpoint returns the instance an endpoint was made from,
// and false if it was not made by this package.
func InstanceFromEndpoint(ep gresolver.Endpoint) (registry.Instance, bool) {
	a, ok := ep.Attributes.Value(instanceKey{}).(instanceAttr)
	if !ok {
		return registry.Instance{}, false
	}
	return a.inst, true
}

// Endpoints converts instances in order.
func Endpoints(insts []registry.Instance) []gresolver.Endpoint {
	out := make([]gresolver.Endpoint, len(insts))
	for i, inst := range insts {
		out[i] = Endpoint(inst)
	}
	return out
}

// keptKey is the resolver.State attribute key under which a state the
// mass-removal guard holds lists the instances it keeps.
type keptKey struct{}

// keptAttr is the IDs of the kept instances, sorted.
type keptAttr struct{ ids []string }

// Equal implements the comparison grpc's attributes package uses.
func (a keptAttr) Equal(o any) bool {
	b, ok := o.(keptAttr)
	return ok && slices.Equal(a.ids, b.ids)
}

// KeptInstances returns the IDs of the instances in s that the
// mass-removal guard keeps although the registry no longer lists them
// (see WithMassRemovalGuard), sorted; nil when s is the registry's set as
// read. The rest of s is what the registry listed. A hold that ends with
// the set unchanged sends no new state, so this describes s when it was
// sent. It is for tests and debugging, and for policies that would rather
// prefer instances the registry still lists.
func KeptInstances(s gresolver.State) []string {
	if a, ok := s.Attributes.Value(keptKey{}).(keptAttr); ok {
		return slices.Clone(a.ids)
	}
	return nil
}

// grpcState is the gRPC state of insts, of which the instances with IDs kept
// are kept by the guard.
func grpcState(insts []registry.Instance, kept []string) gresolver.State {
	s := gresolver.State{Endpoints: Endpoints(insts)}
	if len(kept) > 0 {
		s.Attributes = attributes.New(keptKey{}, keptAttr{ids: kept})
	}
	return s
}
