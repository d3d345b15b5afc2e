// Command wfbench-k8s runs Wayfinder's benchmark harness (package
// benchmark/internal/harness of the root module) on the Kubernetes backend: a real
// kube-apiserver over a real etcd on loopback, and real gRPC servers on
// loopback behind the 10.244.x.y addresses the API server accepts in
// EndpointSlices (package internal/kbench). It runs the propagation,
// idle_load and scale scenarios by default and takes wfbench's flags;
// with -merge it keeps the other backends' results in the report.
// `make bench-kubernetes` runs it from the repository's root:
//
//	cd benchmark/kubernetes && go run ./cmd/wfbench-k8s -merge \
//		-out ../../docs/benchmarks -md ../../docs/benchmarks.md [flags]
//
// The binaries come from WAYFINDER_KUBE_APISERVER_BIN and
// WAYFINDER_ETCD_BIN, as for the tests (the Makefile sets them). It is
// a command of a module of its own (benchmark/kubernetes) so that
// wfbench, in the root module, never imports client-go, and the
// published Kubernetes module carries no benchmark code.
package main

import (
	"os"
	"testing"

	"github.com/wayfinder-rpc/wayfinder/benchmark/internal/harness"
	"github.com/wayfinder-rpc/wayfinder/benchmark/kubernetes/internal/kbench"
)

func main() {
	cfg := harness.DefaultConfig()
	cfg.Backends = []string{kbench.Name}
	cfg.Scenarios = []string{"propagation", "idle_load", "scale"}
	cfg.More = map[string]func(testing.TB) *harness.Backend{kbench.Name: kbench.New}
	os.Exit(harness.Main("wfbench-k8s", cfg))
}
