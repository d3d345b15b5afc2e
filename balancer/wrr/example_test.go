package wrr_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/example"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Dial a service with weighted round robin; weights come from the
// registry, and every 6 calls over weights 1:2:3 go 1, 2 and 3 ways.
func Example() {
	_, stop := example.Start("wrr-example",
		registry.Instance{ID: "a", Weight: 1},
		registry.Instance{ID: "b", Weight: 2},
		registry.Instance{ID: "c", Weight: 3})
	defer stop()

	// A cache without linger, so that no watch outlives the example;
	// a program would call resolver.NewClient.
	cache := resolver.NewCache(resolver.WithLinger(0))
	defer cache.Close()
	cc, err := cache.NewClient("mem://wrr-example/hello",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_weighted_round_robin":{}}]}`))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
	client := hellopb.NewHelloServiceClient(cc)

	ctx := context.Background()
	example.WaitServing(ctx, client, "a", "b", "c")
	fmt.Println(example.Counts(ctx, client, 60))
	// Output: map[a:10 b:20 c:30]
}
