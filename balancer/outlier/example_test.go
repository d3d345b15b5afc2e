package outlier_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/example"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/outlier"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Dial a service with round robin, ejecting an endpoint after 3
// failures in a row: once ejected, the failing backend gets no calls.
func Example() {
	bs, stop := example.Start("outlier-example", registry.Instance{ID: "a"}, registry.Instance{ID: "b"}, registry.Instance{ID: "c"})
	defer stop()

	// A cache without linger, so that no watch outlives the example;
	// a program would call resolver.NewClient.
	cache := resolver.NewCache(resolver.WithLinger(0))
	defer cache.Close()
	cc, err := cache.NewClient("mem://outlier-example/hello",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_outlier_ejection":{
			"child": [{"round_robin": {}}],
			"consecutiveFailures": 3, "baseEjectionTime": "1m"}}]}`))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
	client := hellopb.NewHelloServiceClient(cc)

	ctx := context.Background()
	example.WaitServing(ctx, client, "a", "b", "c")
	bs[2].SetFailing(true)
	// Round robin sends c every third call until it is ejected; 10
	// answers in a row show it is out.
	inARow := 0
	example.WaitFor(ctx, client, "c to be ejected", func(name string) bool {
		if inARow++; name == "error" {
			inARow = 0
		}
		return inARow == 10
	})
	fmt.Println(example.Counts(ctx, client, 30))
	// Output: map[a:15 b:15]
}
