package zone_test

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/zone"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Dial a service preferring zone eu-west-1a, then eu-west-1b, with
// weighted round robin inside each zone.
func Example() {
	reg := memory.New()
	defer reg.Close()
	cc, err := grpc.NewClient("wayfinder:///hello",
		grpc.WithResolvers(resolver.NewBuilder(reg)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_zone_aware":{
			"localZone": "eu-west-1a",
			"failoverOrder": ["eu-west-1b"],
			"child": [{"wayfinder_weighted_round_robin": {}}]}}]}`))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
}
