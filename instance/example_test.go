package instance_test

import (
	"fmt"

	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// A policy reads the registry instance, and with it weight and zone, from
// the endpoints gRPC hands it.
func ExampleFromEndpoint() {
	ep := instance.Endpoint(registry.Instance{ID: "a", Service: "hello", Address: "127.0.0.1:1001", Weight: 3, Zone: "eu-1"})

	inst, ok := instance.FromEndpoint(ep)
	fmt.Println(ok, inst.Address, inst.Weight, inst.Zone)
	// Output: true 127.0.0.1:1001 3 eu-1
}
