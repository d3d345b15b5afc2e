package route_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/example"
	"github.com/wayfinder-rpc/wayfinder/balancer/route"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Send a target's calls to v2, and one call to the canary only.
func ExampleWithStrictSubset() {
	_, stop := example.Start("route-example",
		registry.Instance{ID: "v1", Version: "v1"},
		registry.Instance{ID: "v2", Version: "v2"},
		registry.Instance{ID: "v2-canary", Version: "v2", Tags: []string{"canary"}})
	defer stop()

	// A cache without linger, so that no watch outlives the example;
	// a program would call resolver.NewClient.
	cache := resolver.NewCache(resolver.WithLinger(0))
	defer cache.Close()
	cc, err := cache.NewClient("mem://route-example/hello",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_route":{"subset":"version=v2"}}]}`))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
	client := hellopb.NewHelloServiceClient(cc)

	ctx := context.Background()
	example.WaitServing(ctx, client, "v2", "v2-canary")
	fmt.Println("target's calls:", example.Names(example.Counts(ctx, client, 20)))
	canary := route.WithStrictSubset(ctx, "tag=canary")
	fmt.Println("canary calls:", example.Names(example.Counts(canary, client, 20)))
	// Output:
	// target's calls: [v2 v2-canary]
	// canary calls: [v2-canary]
}
