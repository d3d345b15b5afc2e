package xds_test

import (
	"context"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	_ "github.com/wayfinder-rpc/wayfinder/registry/etcd" // etcd:// URLs
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

func openRegistry(t *testing.T, url string) registry.Registry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := registry.Open(ctx, url)
	if err != nil {
		t.Fatalf("registry.Open(%q) = %v", url, err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

// TestFrozenEtcd: a real etcd that stops answering (frozen behind a
// proxy, for the xDS server only) costs no call, in any client language;
// when it answers again, changes flow.
func TestFrozenEtcd(t *testing.T) {
	member := testenv.StartEtcd(t)
	proxy := registrytest.NewProxy(t, member.Endpoint())
	reg := openRegistry(t, "etcd://"+member.Endpoint())
	xreg := openRegistry(t, "etcd://"+proxy.Addr())
	startHello(t, reg, "a")
	startHello(t, reg, "b")
	srv, addr, _ := startXDS(t, xreg, "127.0.0.1:0")
	clients := []*client{startClient(t, "go", addr), startPython(t, "python", addr), startNode(t, "node", addr)}
	for _, c := range clients {
		c.waitPicks(t, 0, "a", "b")
	}

	proxy.Freeze()
	wait.For(t, 2*time.Minute, "the xDS server to see etcd frozen", func() bool { return srv.Stats().Outages > 0 })
	marks := make([]int, len(clients))
	for i, c := range clients {
		marks[i] = c.calls()
	}
	for i, c := range clients {
		c.waitCalls(t, marks[i], 500)
		c.waitPicks(t, marks[i], "a", "b")
	}

	proxy.Thaw()
	for i, c := range clients {
		marks[i] = c.calls()
	}
	startHello(t, reg, "c")
	for i, c := range clients {
		c.waitPicks(t, marks[i], "a", "b", "c")
	}
}
