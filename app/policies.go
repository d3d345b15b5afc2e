package app

// The policies Config.Policy can name, besides grpc-go's own.
import (
	_ "github.com/wayfinder-rpc/wayfinder/balancer/hash"    // wayfinder_consistent_hash
	_ "github.com/wayfinder-rpc/wayfinder/balancer/outlier" // wayfinder_outlier_ejection
	_ "github.com/wayfinder-rpc/wayfinder/balancer/p2c"     // wayfinder_p2c_ewma
	_ "github.com/wayfinder-rpc/wayfinder/balancer/route"   // wayfinder_route
	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"     // wayfinder_weighted_round_robin
	_ "github.com/wayfinder-rpc/wayfinder/balancer/zone"    // wayfinder_zone_aware
)
