package outlier_test

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	_ "github.com/wayfinder-rpc/wayfinder/balancer/outlier"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Dial a service with P2C, ejecting endpoints after 5 failures in a row.
func Example() {
	reg := memory.New()
	defer reg.Close()
	cc, err := grpc.NewClient("wayfinder:///hello",
		grpc.WithResolvers(resolver.NewBuilder(reg)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_outlier_ejection":{
			"child": [{"wayfinder_p2c_ewma": {}}],
			"consecutiveFailures": 5, "baseEjectionTime": "30s"}}]}`))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
}
