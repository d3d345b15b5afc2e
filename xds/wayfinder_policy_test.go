package xds_test

import (
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	"github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/server"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

// share returns the share of the next n calls of c that reached name.
func share(t *testing.T, c *client, name string, n int) float64 {
	t.Helper()
	mark := c.calls()
	c.waitCalls(t, mark, n)
	return float64(counts(c.picksSince(mark)[:n])[name]) / float64(n)
}

// TestWayfinderPolicy: a cluster whose first policy is Wayfinder's
// weighted round robin (a custom policy, gRFC A52) runs it in a Go
// client that imports balancer/wrr (internal/xdsclient does): with a
// (weight 3) and b (weight 1) in one locality, a gets 3/4 of the calls,
// where round_robin gives each half. Python and Node have no such policy
// and fall back to round_robin without rejecting the cluster (SYNCED, no
// NACK): half each. Weighted round robin is a fixed schedule, so the
// Go share is 75% within a few calls; round robin's is 50%.
func TestWayfinderPolicy(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	startHello(t, reg, "a", server.WithWeight(3))
	startHello(t, reg, "b", server.WithWeight(1))
	srv, addr, _ := startXDS(t, reg, "127.0.0.1:0", xds.WithPolicy("hello",
		xds.Policy{Name: wrr.Name, Config: map[string]any{"defaultWeight": 2}}))
	status := csdsClient(t, addr)
	const n = 2000
	for _, tc := range []struct {
		c        *client
		min, max float64
	}{
		{startClient(t, "go", addr), 0.70, 0.80},
		{startPython(t, "python", addr), 0.45, 0.55},
		{startNode(t, "node", addr), 0.45, 0.55},
	} {
		tc.c.waitPicks(t, 0, "a", "b")
		synced(t, status, tc.c)
		got := share(t, tc.c, "a", n)
		if got < tc.min || got > tc.max {
			t.Errorf("%s: a got %.1f%% of %d calls, want %.0f-%.0f%%", tc.c.name, 100*got, n, 100*tc.min, 100*tc.max)
		} else {
			t.Logf("%s: a got %.1f%% of %d calls", tc.c.name, 100*got, n)
		}
	}
	if n := srv.Stats().NACKs; n != 0 {
		t.Errorf("Stats().NACKs = %d, want 0: %+v", n, srv.Clients())
	}
}

// TestWayfinderPolicyConfig: New checks the config of a Wayfinder
// policy with the policy's own parser, on the JSON a client will read
// (a config the parser refuses would make every Go client that has the
// policy reject the cluster), and sends durations as the strings those
// parsers read.
func TestWayfinderPolicyConfig(t *testing.T) {
	reg := memory.New()
	t.Cleanup(func() { reg.Close() })
	for _, p := range []xds.Policy{
		{Name: wrr.Name, Config: map[string]any{"defaultWeight": 0}},
		{Name: wrr.Name, Config: map[string]any{"noSuchField": 1}},
		{Name: p2c.Name, Config: map[string]any{"decay": "soon"}},
	} {
		if s, err := xds.New(reg, xds.WithPolicy("hello", p)); err == nil {
			s.Close()
			t.Errorf("xds.New(WithPolicy(%+v)): nil error", p)
		} else {
			t.Logf("xds.New(WithPolicy(%+v)) = %v", p, err)
		}
	}
	for _, p := range []xds.Policy{
		{Name: wrr.Name, Config: map[string]any{"defaultWeight": 5}},
		{Name: p2c.Name, Config: map[string]any{"decay": 5 * time.Second}},
		{Name: "a_policy_only_clients_have", Config: map[string]any{"anything": 1}},
	} {
		s, err := xds.New(reg, xds.WithPolicy("hello", p))
		if err != nil {
			t.Errorf("xds.New(WithPolicy(%+v)) = %v", p, err)
			continue
		}
		s.Close()
	}
}
