// Package resolver is Wayfinder's gRPC resolver: it turns a registry
// watch into gRPC endpoint updates, for any registry.Discovery.
//
// # Targets
//
// Two ways in:
//
//   - URL targets, for registries with a scheme: "mem:///hello",
//     "consul://127.0.0.1:8500/hello?tag=v2", "etcd://10.0.0.1:2379/hello".
//     The path names the service; the rest names the registry, which is
//     opened once per distinct URL and shared. Dial with NewClient, which
//     checks the target and always passes grpc.WithResolvers.
//   - An injected Discovery: NewBuilder(d) with grpc.WithResolvers and the
//     target "wayfinder:///hello".
//
// # Behaviour
//
// All ClientConns of one service in one registry share a single upstream
// watch through a Cache (process-wide by default), which lingers after
// its last user so that leaving gRPC's idle mode is answered at once.
// Build never blocks on the network and ResolveNow does nothing: updates
// are pushed as the registry reports them.
//
// Updates use resolver.State.Endpoints, one endpoint per instance, with
// the instance on the endpoint's attributes (see InstanceFromEndpoint).
// grpc-go's own policies use registry data too: the weight is set with
// experimental/balancer/weight (pick_first's weighted shuffleAddressList,
// ring_hash) and the instance ID with resolver/ringhash.SetHashKey, so
// that ring_hash_experimental with requestHashHeader keeps each key on
// the same instance when it re-registers on a new address. An unchanged set causes no update. A registry error is passed to
// ReportError and the last good set stays in use: an error never empties
// the address list. A service that really has zero instances is pushed as
// an empty list, and RPCs then fail with UNAVAILABLE until an instance
// registers.
//
// # Concurrency
//
// Every goroutine is owned: one per upstream watch, stopped by the Cache,
// and one per resolver, stopped by Close. Cache.Close stops everything.
package resolver
