// Command wfbench runs Wayfinder's benchmark harness (package
// benchmark/internal/harness) against real Consul and etcd servers and real gRPC
// servers on loopback, and writes the report: docs/benchmarks.md, and
// docs/benchmarks/report.json with SVG charts. `make bench` runs it.
//
//	go run ./benchmark/cmd/wfbench [flags]
//
// The Consul and etcd binaries come from WAYFINDER_CONSUL_BIN and
// WAYFINDER_ETCD_BIN, as for the tests (the Makefile sets them).
package main

import (
	"os"

	"github.com/wayfinder-rpc/wayfinder/benchmark/internal/harness"
)

func main() {
	os.Exit(harness.Main("wfbench", harness.DefaultConfig()))
}
