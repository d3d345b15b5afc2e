// Package consul is Wayfinder's Consul backend: registration through the
// local agent with heartbeats that mirror real health, and discovery
// through blocking health queries.
//
// Importing the package registers the "consul" scheme with
// driver.RegisterScheme; URLOpener configures registries opened by URL.
// Without a URL registry, use Open, OpenURL, New or NewFromClient.
//
// # URLs
//
// A registry URL names the agent; a gRPC target adds the service as its
// path, which the resolver strips:
//
//	consul://127.0.0.1:8500?dc=dc1&tag=v2&stale=true
//	consul://127.0.0.1:8500/orders?tag=v2
//	consul://                       (CONSUL_HTTP_ADDR, else localhost:8500)
//
// Parameters: dc (comma-separated: one watch per datacenter), tag
// (comma-separated, all required), warning (include warning instances),
// stale, consistent, cached (agent cache), near, wait (blocking wait,
// default 5m), tls (https), check (ttl, grpc or ttl,grpc), ttl (TTL check
// period), interval (gRPC check interval). The query follows the rules
// every backend shares (see the URLs section of registry/driver):
// booleans are written out (stale=true, not a bare ?stale), durations
// are Go durations (30s), and ';', an empty value, a repeated or an
// unknown parameter is an error that names it. Secrets never go in the URL: the ACL token and
// TLS files come from options or from Consul's environment variables
// (CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT,
// CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_HTTP_SSL), and are never
// logged.
//
// # Registration
//
// Each instance is one agent service (ID "<service>:<instance ID>") with
// its tags, address, and Version, Zone, Weight and the user metadata in
// Meta, and one or both checks: a TTL check refreshed every TTL/3 with the
// result of a HealthFunc (GRPCHealth adapts a grpc.health.v1 server), and
// a native gRPC check the agent runs itself. RegisterWithHealth, which
// server.Server uses, adds that gRPC check by default (every 2 s, 1 s
// timeout) so that Consul drops a dead process within about 3 s;
// WithoutServerGRPCCheck turns it off. RegisterWithAddressCheck adds a
// TCP or gRPC check of an address the caller does not serve (wayfinder
// register). Weights.Passing is written as the effective weight. Register starts a reconcile
// loop that never gives up: after any failure it backs off with jitter
// and registers again, which also restores the service after an agent
// restart or a 404 for an unknown check or service. Status reports the
// loop's state. Deregister stops the heartbeat first, then removes the
// service; it is idempotent and bounded by its context.
//
// # Discovery
//
// Watch follows /v1/health/service with blocking queries: the index from
// X-Consul-Index, a 5 minute wait, a request deadline of wait + wait/16 +
// slack, an index reset when it goes backwards, never blocking below 1,
// results compared before they are emitted, a token bucket (burst 2)
// against queries that return at once, and jittered backoff on errors.
// Each watch keeps its own index per datacenter. An idle watch makes one
// request per wait. A watch whose agent answers nothing for the liveness
// bound (WithUnavailableAfter, DefaultUnavailableAfter) abandons its query
// and reports registry.ErrUnavailable; while blocking queries are in
// flight, the Registry pings the agent after half the bound of silence.
//
// An agent with use_streaming_backend (Consul's default since 1.10)
// answers the blocking queries from its streaming backend, one
// subscription to a server per service shared by all its clients, unless
// WithNear is set; QueryBackends counts which backend answered (from
// X-Consul-Query-Backend), and a Debug log line names it when it changes.
//
// Entries other tools registered are instances: the Consul ID is the
// instance ID, Weights.Passing the weight when Meta.wayfinder_weight is
// absent. A Wayfinder field that is malformed or invalid (a foreign
// wayfinder_weight = "heavy") never drops the instance: it is kept with
// that field's default, and the problem is reported once per instance
// and value (a Warn log, FieldProblemCount and the
// wayfinder.discovery.field_problems counter, FieldProblems).
//
// # Errors
//
// Network and server failures wrap registry.ErrUnavailable; 403 answers
// also wrap ErrPermissionDenied and say the ACL token is at fault.
// Invalid instances (including metadata Consul would refuse) fail with
// registry.ErrInvalidInstance before any request. A watcher reports an
// error once per failure episode and keeps the last good set: an error
// never empties it, while a service with no instances is an empty set.
// After Close, calls return registry.ErrClosed.
//
// # Concurrency
//
// A Registry is safe for concurrent use. It owns one goroutine per
// registration and one per watched datacenter per watcher; Deregister,
// Watcher.Close and Registry.Close cancel and wait for theirs. Lock
// order: Registry.mu, then a registration's or watcher's mu.
package consul
