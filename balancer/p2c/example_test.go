package p2c_test

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	_ "github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Dial a service with P2C peak-EWMA, forgetting latencies over 5s.
func Example() {
	reg := memory.New()
	defer reg.Close()
	cc, err := grpc.NewClient("wayfinder:///hello",
		grpc.WithResolvers(resolver.NewBuilder(reg)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_p2c_ewma":{"decay":"5s"}}]}`))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
}
