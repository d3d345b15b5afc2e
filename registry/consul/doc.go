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
// default 5m), timeout (of every call that is not a blocking query,
// default 5s: WithTimeout), tls (https), check (ttl, grpc or ttl,grpc), ttl (TTL check
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
// service; it is idempotent and bounded (see Bounds).
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
// # Bounds
//
// Every call that talks to the agent is bounded by its context's
// deadline, else by the Registry's timeout (WithTimeout, DefaultTimeout,
// 5 s): Register, RegisterWithHealth, RegisterWithAddressCheck,
// Deregister, Lookup and Services called with context.Background()
// return within 5 s whatever the agent does, even if it accepts
// connections and never answers. A Register that fails keeps retrying
// in the background. The same timeout bounds each request of a
// registration's loop (registration, heartbeat) and each read of a watch
// that is not a blocking query. A blocking query legitimately waits up
// to its wait plus jitter; a watch whose agent says nothing at all (not
// even to the ping sent after half the bound) reports the outage from
// Next within WithUnavailableAfter (DefaultUnavailableAfter, 10 s).
//
// # Errors
//
// Every failure to use the agent is a *registry.UnavailableError, which
// wraps registry.ErrUnavailable, names the agent by its URL without
// secrets ("consul://127.0.0.1:8500") and the operation, and says why
// (its Cause):
//
//   - registry.CauseRefused: nothing listens at the address.
//   - registry.CauseNoAnswer: no answer within the bound, which it gives
//     (a frozen or overloaded agent, or a dial that hangs).
//   - registry.CauseNotRegistry: something answered, but not as Consul
//     does: a 404 that is not Consul's "unknown service", a web page, a
//     success that is not JSON, JSON of another shape, a health answer
//     without X-Consul-Index (a wrong address or port).
//   - registry.CauseServer: Consul's own errors, such as a 500 "No
//     cluster leader" or a 429. A 403 also wraps
//     registry.ErrPermissionDenied and says the ACL token is at fault.
//
// A cancelled context is returned as it is, not as the agent's failure.
// The answer checks are made by the HTTP clients New builds (or the copy
// it makes of WithHTTPClient's); a client given to NewFromClient is used
// as it is, so only its statuses and bodies are read, and errors name
// its agent by the failed request's host.
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
