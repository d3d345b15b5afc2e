// Package route is Wayfinder's subset-routing policy, "wayfinder_route":
// calls go to the endpoints whose registry instance matches a selector,
// such as a version or a tag, spread by weight, and fall back to all
// endpoints when none of the subset is ready, unless strict mode is
// asked for. Use it for canaries, blue/green switches, or pinning a
// client to a release.
//
//	import "github.com/wayfinder-rpc/wayfinder/balancer/route"
//
//	// Per target:
//	grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_route":{"subset":"version=v2"}}]}`)
//	// Per call, overriding the target's:
//	ctx = route.WithSubset(ctx, "tag=canary")
//	ctx = route.WithStrictSubset(ctx, "version=v3")
//
// # Selectors
//
// A selector is comma-separated key=value conditions that must all hold:
// version, zone and id compare the instance's fields, tag=x requires
// the tag x, and meta.k=v requires metadata k with value v. An empty
// selector selects every endpoint.
//
// # Fallback
//
// "Unhealthy" means no matching endpoint is ready. Then a call falls
// back to all ready endpoints, or, in strict mode, fails with
// UNAVAILABLE and a message naming the selector. A per-call selector
// that does not parse fails the call with INTERNAL.
//
// # Concurrency
//
// Pickers are lock-free. Each caches up to 64 selectors' subsets in a
// copy-on-write map, so a pick is a map lookup and an atomic add; the
// first call with a new selector builds its subset.
package route
