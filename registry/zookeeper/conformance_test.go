package zookeeper_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
	"github.com/wayfinder-rpc/wayfinder/registry/zookeeper"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness gives the suite clients of a real ZooKeeper through a proxy,
// whose cut is the outage (and, to the clients, a refusal) and whose
// freeze is a server that accepts connections and never answers.
type harness struct {
	srv   *testenv.ZooKeeper
	proxy *registrytest.Proxy
}

// frozenBound is the harness clients' timeout; their session timeout is
// 1.5 times it, so that the client drops a silent connection, and a
// watch reports it, within the bound.
const frozenBound = 2 * time.Second

func (h harness) NewRegistry(t *testing.T) registry.Registry {
	return newRegistry(t, []string{h.proxy.Addr()}, zookeeper.WithTimeout(frozenBound), zookeeper.WithSessionTimeout(frozenBound*3/2))
}

func (h harness) NewOutsideRegistry(t *testing.T) registry.Registry {
	return newRegistry(t, []string{h.srv.Addr()})
}

func (h harness) Outage(*testing.T) func() {
	h.proxy.Cut()
	return h.proxy.Restore
}

func (h harness) Freeze(*testing.T) func() {
	h.proxy.Freeze()
	return h.proxy.Thaw
}

func (h harness) Refuse(*testing.T) func() {
	h.proxy.Cut()
	return h.proxy.Restore
}

func (h harness) FrozenBound() time.Duration { return frozenBound }

func (h harness) Addr() string { return "zk://" + h.proxy.Addr() }

func TestConformance(t *testing.T) {
	srv := testenv.StartZooKeeper(t)
	registrytest.RunConformanceTests(t, harness{srv, registrytest.NewProxy(t, srv.Addr())}, registrytest.RequireOptional())
}

func newRegistry(t testing.TB, servers []string, opts ...zookeeper.Option) *zookeeper.Registry {
	t.Helper()
	r, err := zookeeper.New(servers, opts...)
	if err != nil {
		t.Fatalf("zookeeper.New(%v) = %v", servers, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
