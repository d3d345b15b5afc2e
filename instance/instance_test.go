package instance_test

import (
	"testing"

	"google.golang.org/grpc/experimental/balancer/weight"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/ringhash"

	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

func TestEndpoint(t *testing.T) {
	inst := registry.Instance{
		ID: "a", Service: "hello", Address: "127.0.0.1:1001", Weight: 3, Zone: "z1",
		Tags: []string{"v2"}, Metadata: map[string]string{"k": "v"},
	}
	ep := instance.Endpoint(inst)
	if len(ep.Addresses) != 1 || ep.Addresses[0].Addr != inst.Address {
		t.Fatalf("Endpoint(%+v).Addresses = %v, want [%s]", inst, ep.Addresses, inst.Address)
	}
	got, ok := instance.FromEndpoint(ep)
	if !ok || !got.Equal(inst) {
		t.Fatalf("FromEndpoint(Endpoint(%+v)) = %+v, %v; want it back, true", inst, got, ok)
	}
	if w := weight.FromEndpoint(ep).Weight; w != 3 {
		t.Errorf("weight.FromEndpoint = %d, want 3", w)
	}
	if k := ringhash.HashKey(ep); k != "a" {
		t.Errorf("ringhash.HashKey = %q, want the instance ID %q", k, "a")
	}

	// The endpoint holds its own copy: the caller's maps and slices may change.
	inst.Metadata["k"], inst.Tags[0] = "changed", "changed"
	if got, _ := instance.FromEndpoint(ep); got.Metadata["k"] != "v" || got.Tags[0] != "v2" {
		t.Errorf("after the caller changed its instance, FromEndpoint has tags %v, metadata %v; want [v2], map[k:v]", got.Tags, got.Metadata)
	}

	if got, ok := instance.FromEndpoint(gresolver.Endpoint{Addresses: []gresolver.Address{{Addr: "x:1"}}}); ok {
		t.Errorf("FromEndpoint(a foreign endpoint) = %+v, true; want false", got)
	}
}

// TestEqual checks what gRPC compares: equal instances give equal
// attributes, so an unchanged instance is no change; a new weight or
// new metadata is a change.
func TestEqual(t *testing.T) {
	inst := func() registry.Instance {
		return registry.Instance{ID: "a", Service: "hello", Address: "127.0.0.1:1001", Weight: 3, Metadata: map[string]string{"k": "v"}}
	}
	a, b := instance.Endpoint(inst()), instance.Endpoint(inst())
	if !a.Attributes.Equal(b.Attributes) {
		t.Errorf("Endpoint of equal instances: attributes %v and %v differ", a.Attributes, b.Attributes)
	}
	heavier := inst()
	heavier.Weight = 9
	if c := instance.Endpoint(heavier); a.Attributes.Equal(c.Attributes) {
		t.Errorf("Endpoint of instances with weights 3 and 9: attributes equal")
	}
	tagged := inst()
	tagged.Metadata["k"] = "w"
	if c := instance.Endpoint(tagged); a.Attributes.Equal(c.Attributes) {
		t.Errorf("Endpoint of instances with different metadata: attributes equal")
	}
}
