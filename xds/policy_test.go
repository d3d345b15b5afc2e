package xds_test

import (
	"testing"
	"time"

	statuspb "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

// TestPolicyFallback: a cluster whose policies are a custom policy no
// client has (gRFC A52), then least_request, then round_robin, is
// accepted by Go, Python and Node clients alike (CSDS says SYNCED, no
// NACK), each of which balances with the first policy it supports and
// reaches every instance.
func TestPolicyFallback(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	startHello(t, reg, "a")
	startHello(t, reg, "b")
	srv, addr, _ := startXDS(t, reg, "127.0.0.1:0", xds.WithPolicy("hello",
		xds.Policy{Name: "wayfinder_no_such_policy", Config: map[string]any{"x": 1}},
		xds.Policy{Name: "least_request", Config: map[string]any{"choiceCount": 3}},
	))
	status := csdsClient(t, addr)
	clients := []*client{startClient(t, "go", addr), startPython(t, "python", addr), startNode(t, "node", addr)}
	for _, c := range clients {
		c.waitPicks(t, 0, "a", "b")
		wait.For(t, 10*time.Second, c.name+" to accept the cluster", func() bool {
			return csdsStatus(t, status, c.name, resourcev3.ClusterType, "hello").GetConfigStatus() == statuspb.ConfigStatus_SYNCED
		})
	}
	if n := srv.Stats().NACKs; n != 0 {
		t.Errorf("Stats().NACKs = %d, want 0: %+v", n, srv.Clients())
	}
}

func TestPolicyOptions(t *testing.T) {
	reg := memory.New()
	t.Cleanup(func() { reg.Close() })
	for _, p := range []xds.Policy{
		{},
		{Name: "round_robin", Config: map[string]any{"x": 1}},
		{Name: "least_request", Config: map[string]any{"choiceCount": 1}},
		{Name: "least_request", Config: map[string]any{"other": 2}},
		{Name: "bad name"},
		{Name: "custom", Config: map[string]any{"f": func() {}}},
	} {
		if s, err := xds.New(reg, xds.WithPolicy("hello", p)); err == nil {
			s.Close()
			t.Errorf("xds.New(WithPolicy(%+v)): nil error", p)
		}
	}
}
