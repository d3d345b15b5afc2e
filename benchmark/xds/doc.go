// Package xds benchmarks the two Wayfinder policies whose grpc-go
// counterparts need more than this repository's module provides:
// weighted_round_robin (the ORCA protos of github.com/cncf/xds) and
// outlier_detection_experimental (registered only by importing
// google.golang.org/grpc/xds, about 500 packages). It is a module of its
// own, so that neither enters the library's build or go.sum. Its
// benchmarks run the same bodies as benchmark/internal/picker:
//
//	cd benchmark/xds && go test -run '^$' -bench . -benchmem
//
// and its command cmd/xdstail runs the slow-backend tail of the
// benchmark harness (harness.Tail of benchmark/internal/harness) for
// the same pairs, printing JSON that wfbench's slow_backend scenario
// adds to its report:
//
//	cd benchmark/xds && go run ./cmd/xdstail -tail 5s
//
// The module is not part of make test; check it with
//
//	cd benchmark/xds && go vet ./... && go test ./...
//
// whose test runs the command at tiny sizes.
package xds
