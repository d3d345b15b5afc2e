package hash_test

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/balancer/hash"
	"github.com/wayfinder-rpc/wayfinder/examples/helloworld/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Route each user's calls to the same backend, with bounded load.
func ExampleWithKey() {
	reg := memory.New()
	defer reg.Close()
	cc, err := grpc.NewClient("wayfinder:///hello",
		grpc.WithResolvers(resolver.NewBuilder(reg)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_consistent_hash":{"loadFactor":1.25}}]}`))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
	ctx := hash.WithKey(context.Background(), "user-42")
	_, _ = hellopb.NewHelloServiceClient(cc).SayHello(ctx, &hellopb.HelloRequest{Name: "ann"})
}
