package hash_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/balancer/hash"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/example"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Route each user's calls to the same backend, with bounded load.
func ExampleWithKey() {
	_, stop := example.Start("hash-example", registry.Instance{ID: "a"}, registry.Instance{ID: "b"}, registry.Instance{ID: "c"})
	defer stop()

	// A cache without linger, so that no watch outlives the example;
	// a program would call resolver.NewClient.
	cache := resolver.NewCache(resolver.WithLinger(0))
	defer cache.Close()
	cc, err := cache.NewClient("mem://hash-example/hello",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_consistent_hash":{"loadFactor":1.25}}]}`))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
	client := hellopb.NewHelloServiceClient(cc)

	// Keyless calls go to a random backend: wait until all are ready, so
	// that a key's calls all go to its own.
	example.WaitServing(context.Background(), client, "a", "b", "c")
	ctx := hash.WithKey(context.Background(), "user-42")
	counts := example.Counts(ctx, client, 10)
	fmt.Printf("10 calls for user-42 reached %d backend\n", len(counts))
	// Output: 10 calls for user-42 reached 1 backend
}
