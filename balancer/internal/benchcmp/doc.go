// Package benchcmp benchmarks Wayfinder's pickers and policies against
// grpc-go's round_robin in the same run. It has no code, only benchmarks:
//
//	go test -run XXX -bench . -benchmem ./balancer/internal/benchcmp
//
// BenchmarkPick builds every policy, grpc's round_robin included, through
// its registered builder on a fake ClientConn (internal/testing/fakecc) with n
// ready endpoints, then measures Pick (and Done, where the policy sets
// one) serially and with RunParallel; -large adds 10,000 endpoints,
// whose setup takes minutes. BenchmarkThroughput makes real
// calls over loopback to 10 servers through each policy.
package benchcmp
