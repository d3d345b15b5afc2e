// Package resolver is Wayfinder's gRPC resolver: it turns a registry
// watch into gRPC endpoint updates, for any registry.Discovery.
//
// # Getting a ClientConn
//
// One primary way and one escape hatch:
//
//   - NewClient(target, opts...) dials a URL target of any imported
//     backend: "mem:///hello", "consul://127.0.0.1:8500/hello?tag=v2",
//     "etcd://10.0.0.1:2379/hello". The path names the service; the rest
//     names the registry, which is opened once per distinct URL and
//     shared. NewClient checks the target first and always passes
//     grpc.WithResolvers, so a mistyped scheme is an error, never a
//     silent DNS lookup. Cache.NewClient is the same on a Cache of your
//     own (its linger, guard, logger, URLMux); app.Clients is NewClient
//     for fx.
//   - The escape hatch, for a registry you built yourself (a Discovery
//     with options no URL carries, or a test double): NewBuilder(d) with
//     grpc.NewClient("wayfinder:///hello", grpc.WithResolvers(b)).
//
// A program that cannot pass dial options registers URL builders in
// gRPC's global resolver registry itself, after importing the backends:
// gresolver.Register(resolver.URLBuilder("consul")). NewClient is better:
// it checks the target, while grpc.NewClient alone resolves a scheme
// nobody registered through DNS.
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
// the instance on the endpoint's attributes (see package instance, whose
// FromEndpoint reads it back).
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
// # Errors
//
// A registry's trouble reaches RPCs as UNAVAILABLE naming the service
// and the registry ("wayfinder: service "hello" in etcd://...: <cause>"),
// and a service with no instances as UNAVAILABLE reading "service X has
// no instances in <registry>", so that wait-for-ready RPCs wait and retry
// policies retry: the errors the resolver reports carry no gRPC status
// of their own (see docs/architecture.md, "What an RPC reads").
// NewClient's interceptors, also available as Builder.DialOptions, give
// every policy's "no endpoints" text the same words.
//
// # Concurrency
//
// Every goroutine is owned: one per upstream watch, stopped by the Cache,
// and one per resolver, stopped by Close. Cache.Close stops everything.
package resolver
