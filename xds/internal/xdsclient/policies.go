package main

// Wayfinder's policies, registered with gRPC as a Go client that uses
// them imports them: a cluster whose load_balancing_policy names one
// first (a custom policy, gRFC A52) runs it.
import (
	_ "github.com/wayfinder-rpc/wayfinder/balancer/hash"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"
)
