// Package custom turns a user's choice function into a gRPC load-balancing
// policy. The user writes only the choice: given the call and the ready
// endpoints, each with its registry instance (zone, version, tags,
// metadata, weight), return the index of the one to use. Wayfinder does
// the rest the way grpc-go documents: endpointsharding with pick_first
// children, health listener, lock-free picker, rebuilt when endpoints
// change.
//
//	func init() {
//		custom.Register("prefer_canary", func(c custom.Call, ready []custom.Endpoint) (int, error) {
//			for i, e := range ready {
//				if slices.Contains(e.Instance.Tags, "canary") {
//					return i, nil
//				}
//			}
//			return rand.IntN(len(ready)), nil
//		})
//	}
//
//	grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"prefer_canary":{}}]}`)
//
// See examples/custompicker for a runnable program.
//
// # Errors
//
// Register panics on a name that is not lowercase snake_case or is taken.
// A PickFunc's error fails the call (ErrNoChoice queues it instead); a
// panic or an out-of-range index fails the call with INTERNAL.
//
// # Concurrency
//
// A PickFunc runs concurrently on every call and must not block. A
// BuildFunc runs serially, off the pick path.
package custom
