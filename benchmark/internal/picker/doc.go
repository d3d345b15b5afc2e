// Package picker benchmarks Wayfinder's pickers and policies against
// grpc-go's round_robin and against grpc-go's built-in policy of the
// same purpose, in the same run:
//
//	go test -run '^$' -bench . -benchmem ./benchmark/internal/picker
//	cd benchmark/xds && go test -run '^$' -bench . -benchmem
//
// The package holds the benchmark bodies (Pick, Throughput, Versus); its
// tests and those of the module benchmark/xds run them over their policies.
// Pick builds every policy through its registered builder on a fake
// ClientConn (internal/testing/fakecc) with n ready endpoints, then
// measures Pick (and Done, where the policy sets one) serially and with
// RunParallel; -large adds 10,000 endpoints, whose setup takes minutes.
// Throughput makes real calls over loopback to 10 servers through each
// policy, interleaved with round_robin; Versus interleaves each Wayfinder
// policy with its alternative.
//
// The alternatives here are least_request_experimental and
// ring_hash_experimental. weighted_round_robin (which needs the ORCA
// protos of github.com/cncf/xds) and outlier_detection_experimental
// (registered only by google.golang.org/grpc/xds, about 500 packages)
// are measured in benchmark/xds, a module of its own, so that neither enters the
// library's build or go.sum.
package picker
