// Package instance carries a registry.Instance on a gRPC
// resolver.Endpoint: it is what Wayfinder's resolver and its
// load-balancing policies share. The resolver makes endpoints with
// Endpoint; a policy reads the instance back with FromEndpoint, and with
// it the weight, zone, version, tags and metadata.
//
// Like grpc-go's experimental/balancer/weight and resolver/ringhash, the
// package imports only grpc and registry's value types, so a policy that
// reads instances depends on neither the resolver (its cache, the
// registry drivers, backoff) nor OpenTelemetry.
//
// # Equality
//
// The instance is stored under an unexported key type, and its value
// compares by value: equal instances give equal endpoints, so an
// unchanged instance is no change to gRPC, and a changed weight or tag
// changes only the attributes, which reach the picker without a
// reconnect.
package instance
