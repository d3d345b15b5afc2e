package route_test

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/balancer/route"
	"github.com/wayfinder-rpc/wayfinder/examples/helloworld/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Send a target's calls to v2, and one call to the canary only.
func ExampleWithStrictSubset() {
	reg := memory.New()
	defer reg.Close()
	cc, err := grpc.NewClient("wayfinder:///hello",
		grpc.WithResolvers(resolver.NewBuilder(reg)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_route":{"subset":"version=v2"}}]}`))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
	ctx := route.WithStrictSubset(context.Background(), "tag=canary")
	_, _ = hellopb.NewHelloServiceClient(cc).SayHello(ctx, &hellopb.HelloRequest{Name: "ann"})
}
