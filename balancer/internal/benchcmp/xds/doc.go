// Package xds benchmarks the two Wayfinder policies whose grpc-go
// counterparts need more than this repository's module provides:
// weighted_round_robin (the ORCA protos of github.com/cncf/xds) and
// outlier_detection_experimental (registered only by importing
// google.golang.org/grpc/xds, about 500 packages). It is a module of its
// own, so that neither enters the library's build or go.sum; it has no
// code, only benchmarks, and runs the same bodies as
// balancer/internal/benchcmp:
//
//	cd balancer/internal/benchcmp/xds && go test -run '^$' -bench . -benchmem
package xds
