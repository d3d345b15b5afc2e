package xds_test

import (
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/server"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

// waitShare waits until name got between lo and hi of the last n calls
// of c.
func waitShare(t *testing.T, c *client, name string, n int, lo, hi float64) {
	t.Helper()
	mark := c.calls()
	var got float64
	ok := wait.Until(90*time.Second, func() bool {
		picks := c.picksSince(mark)
		if len(picks) < n {
			return false
		}
		got = float64(counts(picks[len(picks)-n:])[name]) / float64(n)
		return got >= lo && got <= hi
	})
	if !ok {
		t.Fatalf("%s: %s got %.1f%% of the last %d calls, want %.0f-%.0f%%", c.name, name, 100*got, n, 100*lo, 100*hi)
	}
	t.Logf("%s: %s got %.1f%% of the last %d calls", c.name, name, 100*got, n)
}

// TestWeightedRoundRobin: with weighted_round_robin (gRFC A58), a Go
// client weighs the servers by their ORCA load reports
// (server.WithLoadReports): a, reporting 100 qps at utilisation 0.2
// (weight 500), gets 80% of the calls and b, at 0.8 (weight 125), 20%;
// when the loads swap, so do the shares. Node's grpc-js-xds 1.14 has
// the policy only with GRPC_EXPERIMENTAL_XDS_WRR_LB=true (not set here:
// with it, one run in two sent none of 1,000 calls to one endpoint), and
// without it falls back to round_robin (50%), as does Python's grpcio
// 1.51, which reads only the cluster's lb_policy. All accept the cluster
// (SYNCED, no NACK).
func TestWeightedRoundRobin(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	a := startHello(t, reg, "a", server.WithLoadReports())
	b := startHello(t, reg, "b", server.WithLoadReports())
	load := func(s *server.Server, util float64) {
		s.LoadReports().SetQPS(100)
		s.LoadReports().SetApplicationUtilization(util)
	}
	load(a, 0.2)
	load(b, 0.8)
	srv, addr, _ := startXDS(t, reg, "127.0.0.1:0", xds.WithPolicy("hello", xds.Policy{
		Name:   "weighted_round_robin",
		Config: map[string]any{"blackoutPeriod": time.Second, "weightUpdatePeriod": "500ms"},
	}))
	status := csdsClient(t, addr)
	goc, node, py := startClient(t, "go", addr), startNode(t, "node", addr), startPython(t, "python", addr)
	const n = 1000
	for _, c := range []*client{goc, node, py} {
		c.waitPicks(t, 0, "a", "b")
		synced(t, status, c)
	}
	// Weighted round robin schedules are deterministic to a few calls
	// (earliest deadline first), and round robin's exactly even.
	waitShare(t, goc, "a", n, 0.75, 0.85)
	for _, c := range []*client{node, py} {
		if got := share(t, c, "a", n); got < 0.45 || got > 0.55 {
			t.Errorf("%s: a got %.1f%% of %d calls, want 45-55%% (round robin)", c.name, 100*got, n)
		}
	}

	load(a, 0.8)
	load(b, 0.2)
	waitShare(t, goc, "a", n, 0.15, 0.25)
	if n := srv.Stats().NACKs; n != 0 {
		t.Errorf("Stats().NACKs = %d, want 0: %+v", n, srv.Clients())
	}
}

func TestWeightedRoundRobinOptions(t *testing.T) {
	reg := memory.New()
	t.Cleanup(func() { reg.Close() })
	for _, cfg := range []map[string]any{
		{"blackoutPeriod": "soon"},
		{"blackoutPeriod": -time.Second},
		{"blackoutPeriod": 10},
		{"enableOobLoadReport": "yes"},
		{"errorUtilizationPenalty": -1.0},
		{"errorUtilizationPenalty": "1"},
		{"choiceCount": 2},
	} {
		if s, err := xds.New(reg, xds.WithPolicy("hello", xds.Policy{Name: "weighted_round_robin", Config: cfg})); err == nil {
			s.Close()
			t.Errorf("xds.New(WithPolicy(weighted_round_robin, %v)): nil error", cfg)
		}
	}
	s, err := xds.New(reg, xds.WithPolicy("hello", xds.Policy{Name: "weighted_round_robin", Config: map[string]any{
		"blackoutPeriod": "1s", "weightExpirationPeriod": 3 * time.Minute, "weightUpdatePeriod": "1s", "oobReportingPeriod": "10s",
		"enableOobLoadReport": true, "errorUtilizationPenalty": 1,
	}}))
	if err != nil {
		t.Fatalf("xds.New(weighted_round_robin with every key) = %v", err)
	}
	s.Close()
}
