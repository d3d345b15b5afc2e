package xds_test

import (
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	_ "github.com/wayfinder-rpc/wayfinder/registry/consul" // consul:// URLs
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
	"github.com/wayfinder-rpc/wayfinder/resolver"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

// TestConsulThreeLanguages: against a real Consul agent, clients in Go,
// Python and Node share one upstream watch; each reaches every instance,
// sees a Register and a Deregister, and loses no call while the xDS
// server is cut off from Consul.
func TestConsulThreeLanguages(t *testing.T) {
	agent := testenv.StartConsul(t)
	proxy := registrytest.NewProxy(t, agent.HTTPAddr())
	reg := openRegistry(t, "consul://"+agent.HTTPAddr())
	xreg := openRegistry(t, "consul://"+proxy.Addr())
	cache := resolver.NewCache(resolver.WithLinger(0))
	t.Cleanup(func() { cache.Close() })
	startHello(t, reg, "a")
	b := startHello(t, reg, "b")
	srv, addr, _ := startXDS(t, xreg, "127.0.0.1:0", xds.WithCache(cache))
	clients := []*client{startClient(t, "go", addr), startPython(t, "python", addr), startNode(t, "node", addr)}
	for _, c := range clients {
		c.waitPicks(t, 0, "a", "b")
	}
	if got := cache.Stats(); got.Watches != 1 || got.Upstreams != 1 {
		t.Errorf("cache.Stats() = %+v with three clients, want 1 watch and 1 upstream", got)
	}

	marks := make([]int, len(clients))
	for i, c := range clients {
		marks[i] = c.calls()
	}
	startHello(t, reg, "c")
	for i, c := range clients {
		c.waitPicks(t, marks[i], "c")
	}
	if err := reg.Deregister(t.Context(), b.Instance()); err != nil {
		t.Fatalf("Deregister(b) = %v", err)
	}
	for _, c := range clients {
		c.waitOnly(t, 300, "a", "c")
	}

	proxy.Cut()
	wait.For(t, time.Minute, "the xDS server to see Consul cut off", func() bool { return srv.Stats().Outages > 0 })
	for i, c := range clients {
		marks[i] = c.calls()
	}
	for i, c := range clients {
		c.waitCalls(t, marks[i], 300)
		c.waitPicks(t, marks[i], "a", "c")
	}
	proxy.Restore()
}
