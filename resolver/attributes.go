package resolver

import (
	"slices"

	"google.golang.org/grpc/attributes"
	gresolver "google.golang.org/grpc/resolver"

	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

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
	s := gresolver.State{Endpoints: instance.Endpoints(insts)}
	if len(kept) > 0 {
		s.Attributes = attributes.New(keptKey{}, keptAttr{ids: kept})
	}
	return s
}
