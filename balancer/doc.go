// Package balancer holds what Wayfinder's load-balancing policies share:
// the configuration error type. The policies live in subpackages, one per
// policy, each registered with gRPC under its own name when imported:
//
//	balancer/wrr     "wayfinder_weighted_round_robin"  registry weights, smooth
//	balancer/p2c     "wayfinder_p2c_ewma"              power of two choices, peak EWMA latency
//	balancer/hash    "wayfinder_consistent_hash"       per-call key, weights, bounded load
//	balancer/route   "wayfinder_route"                 version/tag subsets with fallback
//	balancer/custom  user-named                        a user's choice function as a policy
//
// Every policy is built the way grpc-go documents for its own round_robin:
// it wraps balancer/endpointsharding with pick_first children (health
// listener enabled), so connection management, reconnection and health
// checking are grpc's, and only the choice among ready endpoints is
// Wayfinder's. Weights, zones, versions and tags are read from the
// registry.Instance the Wayfinder resolver puts on each endpoint (see
// package instance, which the policies share with the resolver instead of
// importing it); a changed weight or tag reaches the picker without
// reconnecting.
//
// Select a policy by name in the service config, for example:
//
//	grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_p2c_ewma":{}}]}`)
//
// See docs/balancers.md for every policy's configuration and when to use it.
//
// # Errors
//
// Invalid policy configuration is reported as a *ConfigError wrapping
// ErrInvalidConfig, naming the policy and the field.
package balancer
