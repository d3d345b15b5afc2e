package zone_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/example"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/zone"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Dial a service preferring zone eu-west-1a, then eu-west-1b, with
// weighted round robin inside each zone. Calls stay in the local zone
// while it is healthy and fail over when it is down.
func Example() {
	bs, stop := example.Start("zone-example",
		registry.Instance{ID: "a1", Zone: "eu-west-1a"},
		registry.Instance{ID: "b1", Zone: "eu-west-1b"},
		registry.Instance{ID: "b2", Zone: "eu-west-1b"},
		registry.Instance{ID: "c1", Zone: "eu-west-1c"})
	defer stop()

	// A cache without linger, so that no watch outlives the example;
	// a program would call resolver.NewClient.
	cache := resolver.NewCache(resolver.WithLinger(0))
	defer cache.Close()
	cc, err := cache.NewClient("mem://zone-example/hello",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_zone_aware":{
			"localZone": "eu-west-1a",
			"failoverOrder": ["eu-west-1b"],
			"child": [{"wayfinder_weighted_round_robin": {}}]}}]}`))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
	client := hellopb.NewHelloServiceClient(cc)

	ctx := context.Background()
	example.WaitServing(ctx, client, "a1")
	fmt.Println("local zone healthy:", example.Counts(ctx, client, 10))
	bs[0].Stop()
	// No call leaves the zone while a1 is healthy, so once both of
	// eu-west-1b answer the client has seen a1 down.
	example.WaitServing(ctx, client, "b1", "b2")
	fmt.Println("local zone down:", example.Counts(ctx, client, 10))
	// Output:
	// local zone healthy: map[a1:10]
	// local zone down: map[b1:5 b2:5]
}
