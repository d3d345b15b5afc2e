package server_test

import (
	"testing"

	"github.com/wayfinder-rpc/wayfinder/internal/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	_ "github.com/wayfinder-rpc/wayfinder/registry/consul"
	_ "github.com/wayfinder-rpc/wayfinder/registry/etcd"
)

func openURL(t *testing.T, u string) registry.Registry {
	t.Helper()
	r, err := registry.Open(t.Context(), u)
	if err != nil {
		t.Fatalf("Open(%q) = %v", u, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// The servers and the client use separate registry clients, as separate
// processes would.
func testRollingRestartURL(t *testing.T, u string) {
	r := rollingRestart(t, openURL(t, u), openURL(t, u), 5, 10, false)
	logRoll(t, u, r)
	if r.failures != 0 || r.restarts != 50 || r.calls < 100 {
		t.Fatalf("rolling restart on %s: %d of %d calls failed over %d restarts (last error %v); want 0 failures", u, r.failures, r.calls, r.restarts, r.lastErr)
	}
}

func TestRollingRestartConsul(t *testing.T) {
	testRollingRestartURL(t, "consul://"+testenv.StartConsul(t).HTTPAddr())
}

func TestRollingRestartEtcd(t *testing.T) {
	testRollingRestartURL(t, "etcd://"+testenv.StartEtcd(t).ClientAddr)
}
