package p2c_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/example"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Dial a service with P2C peak-EWMA. A backend that starts failing fast
// is charged errorPenalty for its first failure, which makes it look
// slower than the healthy one until that decays, over a few decay
// periods: the next calls all go to the healthy backend.
func Example() {
	bs, stop := example.Start("p2c-example", registry.Instance{ID: "a"}, registry.Instance{ID: "b"})
	defer stop()

	// A cache without linger, so that no watch outlives the example;
	// a program would call resolver.NewClient.
	cache := resolver.NewCache(resolver.WithLinger(0))
	defer cache.Close()
	cc, err := cache.NewClient("mem://p2c-example/hello",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_p2c_ewma":{"decay":"10s","errorPenalty":"1s"}}]}`))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
	client := hellopb.NewHelloServiceClient(cc)

	ctx := context.Background()
	example.WaitServing(ctx, client, "a", "b")
	bs[1].SetFailing(true)
	example.WaitFor(ctx, client, "b's first failure", func(name string) bool { return name == "error" })
	fmt.Println(example.Counts(ctx, client, 20))
	// Output: map[a:20]
}
