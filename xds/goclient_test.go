package xds_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

// The registry of these tests is an in-process memory store: the xDS
// server and the HelloService servers run in the test process, each
// with a client of its own, and grpc-go's xDS client runs as a child
// process.

// TestGoClientFollowsRegistry: grpc-go's xDS client reaches every
// instance, and a Register and a Deregister reach its picks, with no
// failed call.
func TestGoClientFollowsRegistry(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	xreg := store.Open()
	t.Cleanup(func() { xreg.Close() })
	startHello(t, reg, "a")
	b := startHello(t, reg, "b")
	_, addr, _ := startXDS(t, xreg, "127.0.0.1:0")

	c := startClient(t, "go", addr)
	c.waitPicks(t, 0, "a", "b")

	mark := c.calls()
	startHello(t, reg, "c")
	c.waitPicks(t, mark, "c")

	if err := reg.Deregister(context.Background(), b.Instance()); err != nil {
		t.Fatalf("Deregister(b) = %v", err)
	}
	c.waitOnly(t, 300, "a", "c")
	c.waitPicks(t, c.calls(), "a", "c")
}

// TestGoClientOutage: while the xDS server's registry is away, its
// clients keep the last good endpoints (no empty EDS) and no call fails;
// after it, changes flow again.
func TestGoClientOutage(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	xreg := store.Open()
	t.Cleanup(func() { xreg.Close() })
	startHello(t, reg, "a")
	startHello(t, reg, "b")
	srv, addr, _ := startXDS(t, xreg, "127.0.0.1:0")
	c := startClient(t, "go", addr)
	c.waitPicks(t, 0, "a", "b")

	xreg.SetOutage(errors.New("partition"))
	wait.For(t, 10*time.Second, "the xDS server to see the outage", func() bool { return srv.Stats().Outages > 0 })
	mark := c.calls()
	c.waitCalls(t, mark, 500)
	c.waitPicks(t, mark, "a", "b")

	xreg.SetOutage(nil)
	mark = c.calls()
	startHello(t, reg, "c")
	c.waitPicks(t, mark, "a", "b", "c")
}

// TestServerRestart: a restart of the xDS server costs no call, in any
// client language, even while the new server cannot read its registry
// (it must then send no endpoints rather than empty ones); each client
// reconnects to it, and it feeds them changes once the registry is back.
func TestServerRestart(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	xreg := store.Open()
	t.Cleanup(func() { xreg.Close() })
	startHello(t, reg, "a")
	_, addr, stop := startXDS(t, xreg, "127.0.0.1:0")
	clients := []*client{startClient(t, "go", addr), startPython(t, "python", addr), startNode(t, "node", addr)}
	for _, c := range clients {
		c.waitPicks(t, 0, "a")
	}

	stop()
	for _, c := range clients {
		c.waitCalls(t, c.calls(), 100) // served from what the client has
	}
	xreg.SetOutage(errors.New("partition"))
	srv2, _, _ := startXDS(t, xreg, addr)
	wait.For(t, 2*time.Minute, "the clients to reconnect", func() bool { return srv2.Stats().Streams == len(clients) })
	wait.For(t, 10*time.Second, "the new server to see the outage", func() bool { return srv2.Stats().Outages > 0 })
	marks := make([]int, len(clients))
	for i, c := range clients {
		marks[i] = c.calls()
	}
	for i, c := range clients {
		c.waitCalls(t, marks[i], 300)
	}
	xreg.SetOutage(nil)
	for i, c := range clients {
		marks[i] = c.calls()
	}
	startHello(t, reg, "b")
	for i, c := range clients {
		c.waitPicks(t, marks[i], "a", "b")
	}
}

// TestOneWatchPerService: clients of one service share one upstream
// watch, which stops when the last of them leaves.
func TestOneWatchPerService(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	xreg := store.Open()
	t.Cleanup(func() { xreg.Close() })
	cache := resolver.NewCache(resolver.WithLinger(0))
	t.Cleanup(func() { cache.Close() })
	startHello(t, reg, "a")
	srv, addr, _ := startXDS(t, xreg, "127.0.0.1:0", xds.WithCache(cache))

	c1 := startClient(t, "go-1", addr)
	c2 := startClient(t, "go-2", addr)
	c1.waitPicks(t, 0, "a")
	c2.waitPicks(t, 0, "a")
	if got := cache.Stats(); got.Watches != 1 || got.Upstreams != 1 {
		t.Errorf("cache.Stats() = %+v with two clients, want 1 watch and 1 upstream", got)
	}
	if got := srv.Stats(); got.Streams != 2 || got.Services != 1 {
		t.Errorf("Stats() = %+v with two clients, want 2 streams and 1 service", got)
	}

	c1.stop(t)
	wait.For(t, 10*time.Second, "one stream", func() bool { return srv.Stats().Streams == 1 })
	if got := cache.Stats(); got.Watches != 1 {
		t.Errorf("cache.Stats() = %+v with one client left, want 1 watch", got)
	}
	c2.stop(t)
	wait.For(t, 10*time.Second, "no stream, service or watch", func() bool {
		return srv.Stats().Streams == 0 && srv.Stats().Services == 0 && cache.Stats().Watches == 0
	})
}
