package server_test

import (
	"context"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	_ "github.com/wayfinder-rpc/wayfinder/registry/consul"
	_ "github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/server"
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

// TestConsulHealthFollowsServer: the registration's health is the
// server's grpc.health.v1 status, not an always-passing heartbeat.
func TestConsulHealthFollowsServer(t *testing.T) {
	u := "consul://" + testenv.StartConsul(t).HTTPAddr() + "?ttl=3s"
	reg := openURL(t, u)
	s, err := server.New(reg, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitRegistered(t, s)
	defer s.Stop(context.Background())
	passing := func(want int) {
		t.Helper()
		var insts []registry.Instance
		var err error
		if !wait.Until(15*time.Second, func() bool {
			insts, err = reg.Lookup(t.Context(), "hello")
			return err == nil && len(insts) == want
		}) {
			t.Fatalf("passing instances = %v, %v; want %d", insts, err, want)
		}
	}
	passing(1)
	s.Health().SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	passing(0)
	s.Health().SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	passing(1)
}
