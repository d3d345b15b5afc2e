// Package hash is Wayfinder's consistent-hashing policy,
// "wayfinder_consistent_hash": calls with the same key go to the same
// endpoint, keys spread in proportion to registry weights, and removing
// one of N endpoints moves only the keys it owned, about 1/N. Use it for
// cache affinity or per-entity session state.
//
//	import "github.com/wayfinder-rpc/wayfinder/balancer/hash"
//
//	grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_consistent_hash":{"header":"x-user-id"}}]}`)
//	ctx = hash.WithKey(ctx, userID) // or send the x-user-id header
//
// # Keys
//
// A call's key is the one set with WithKey, else the first value of the
// configured outgoing metadata header. A call without a key goes to a
// random ready endpoint, or fails with INTERNAL if MissingKey is "fail".
// Keys are hashed with a fixed function, so all clients agree.
//
// # Ring
//
// Each endpoint gets ring points in proportion to its weight (Replicas
// for the average weight), at hashes of its address, so its points stay
// put when others come and go. All endpoints are on the ring, ready or
// not: a key whose endpoint is not ready goes to the next ready one on
// the ring and comes back when it is, and the ring is rebuilt only when
// addresses or weights change, never on the pick path. A pick hashes the
// key and binary-searches the ring. A key from WithKey costs no
// allocation; a key from the header costs one of 16 bytes, set or
// appended, because metadata.ValueFromOutgoingContext copies the values
// and grpc has no public way to read outgoing metadata without a copy.
//
// # Bounded load
//
// With LoadFactor c, an endpoint already serving more than c times the
// mean number of in-flight calls is passed over for the next one on the
// ring, so a hot key cannot overload one endpoint. This costs an
// allocation per pick, for the Done callback.
//
// # Concurrency
//
// Pickers are immutable and lock-free; in-flight counts are atomics.
package hash
