// Package testenv starts real servers for tests: Consul agents and
// clusters, etcd members and clusters, and gRPC servers on loopback.
//
// Consul and etcd are built from source by `make servers` (which `make
// test` runs first) and found through WAYFINDER_CONSUL_BIN and
// WAYFINDER_ETCD_BIN; so are the third-party gRPC clients that tests run
// against Wayfinder's server (grpc-health-probe, grpcurl; grpctools.go).
// A test that cannot find its binary fails: it never skips, so a missing
// install step cannot hide behind a green run.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Binary returns the path of a test server binary named by the
// environment variable env, falling back to name on PATH. It fails the
// test if neither exists.
func Binary(t testing.TB, env, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		t.Fatalf("testenv: %s=%s does not exist; run `make servers` (make test does it) to build it", env, p)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Fatalf("testenv: no %s binary: set %s or run the tests with `make test`, which builds it", name, env)
	return ""
}
