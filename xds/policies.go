package xds

// Wayfinder's own policies, registered with gRPC in this process too, so
// that New checks their configs with their own parsers (see
// customPolicy): a Go client that imports the same packages runs them
// from a cluster's load_balancing_policy (gRFC A52).
//
// Under xDS, an endpoint carries the weight the server sent
// (Instance.Weight, as grpc-go scales it within its locality) but not
// the registry.Instance the Wayfinder resolver attaches: the policies
// that choose by weight, latency or a per-call key (weighted round
// robin, P2C-EWMA, consistent hash) work as they do with the Wayfinder
// resolver; those that read an instance's version, tags or zone
// (wayfinder_route, wayfinder_zone_aware) see none, and xDS has
// localities and canary routes for those.
import (
	_ "github.com/wayfinder-rpc/wayfinder/balancer/hash"    // wayfinder_consistent_hash
	_ "github.com/wayfinder-rpc/wayfinder/balancer/outlier" // wayfinder_outlier_ejection
	_ "github.com/wayfinder-rpc/wayfinder/balancer/p2c"     // wayfinder_p2c_ewma
	_ "github.com/wayfinder-rpc/wayfinder/balancer/route"   // wayfinder_route
	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"     // wayfinder_weighted_round_robin
	_ "github.com/wayfinder-rpc/wayfinder/balancer/zone"    // wayfinder_zone_aware
)
