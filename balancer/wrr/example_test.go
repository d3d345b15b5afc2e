package wrr_test

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Dial a service with weighted round robin; weights come from the
// registry.
func Example() {
	reg := memory.New()
	defer reg.Close()
	cc, err := grpc.NewClient("wayfinder:///hello",
		grpc.WithResolvers(resolver.NewBuilder(reg)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_weighted_round_robin":{}}]}`))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
}
