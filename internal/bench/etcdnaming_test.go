package bench

import (
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
)

// TestEtcdNamingReachesWayfinder: a ClientConn on etcd's own naming
// resolver, at the target the harness gives it, reaches servers that a
// Wayfinder etcd registry registered, follows a deregistration, and holds
// one watch on the server.
func TestEtcdNamingReachesWayfinder(t *testing.T) {
	be := NewEtcd(t)
	ctx := t.Context()
	reg := be.Open(t, nil)
	svc := uniqueService("naming")
	a, b := startHello(t, "a"), startHello(t, "b")
	for _, h := range []*helloServer{a, b} {
		if err := register(ctx, reg, h.instance(svc), 10*time.Second); err != nil {
			t.Fatalf("Register(%s) = %v", h.name, err)
		}
	}
	nb, err := newNamingBuilder(t, be, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := nb.target(svc), "etcd:///"+etcd.DefaultPrefix+"/"+svc; got != want {
		t.Errorf("target(%q) = %q, want %q", svc, got, want)
	}
	probe, err := newWatchProbe(ctx, be)
	if err != nil {
		t.Fatal(err)
	}
	_, c := dialNaming(t, nb, svc)
	if err := waitServing(ctx, c, 20*time.Second, "a", "b"); err != nil {
		t.Fatalf("through etcd's naming resolver: %v", err)
	}
	m := map[string]float64{}
	if err := probe.put(ctx, m, 1); err != nil {
		t.Fatal(err)
	}
	if m["server_watchers"] != 1 {
		t.Errorf("watches opened on etcd by one ClientConn on etcd's naming resolver = %v, want 1", m["server_watchers"])
	}
	if err := reg.Deregister(ctx, registry.Instance{ID: "a", Service: svc}); err != nil {
		t.Fatal(err)
	}
	if _, err := until(ctx, c, time.Now(), func(name string) bool { return name == "b" }, 4); err != nil {
		t.Errorf("after Deregister(a), calls did not leave it: %v", err)
	}
	if n := nb.open.Load(); n != 1 {
		t.Errorf("naming resolvers open = %d, want 1", n)
	}
}
