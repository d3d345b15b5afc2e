package harness

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
	c0, err := probe.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]float64{}
	probe.put(m, c0, 1)
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

// checkEtcdNaming checks what must hold of etcd's naming resolver beside
// Wayfinder's on any machine: it saw every change, and on the server it
// holds one watch per ClientConn where Wayfinder holds one per service.
func checkEtcdNaming(t *testing.T, rep *Report, cfg Config) {
	t.Helper()
	if got := metric(t, rep, "propagation", "etcd", namingVariant, "changes"); got != float64(2*cfg.Changes) {
		t.Errorf("propagation %s changes = %v, want %d", namingVariant, got, 2*cfg.Changes)
	}
	if got := metric(t, rep, "idle_load", "etcd", namingVariant, "server_watchers"); got != float64(cfg.IdleConns) {
		t.Errorf("idle_load %s: %v watches opened on etcd, want one per ClientConn (%d)", namingVariant, got, cfg.IdleConns)
	}
	if got := metric(t, rep, "idle_load", "etcd", namingVariant, "resolvers"); got != float64(cfg.IdleConns) {
		t.Errorf("idle_load %s: %v resolvers open, want %d", namingVariant, got, cfg.IdleConns)
	}
	if got := metric(t, rep, "idle_load", "etcd", namingVariant, "pushes_in_window"); got != 0 {
		t.Errorf("idle_load %s: %v pushes to gRPC while nothing changed, want 0", namingVariant, got)
	}
	if got := metric(t, rep, "idle_load", "etcd", "wayfinder", "server_watchers"); got != float64(cfg.IdleServices) {
		t.Errorf("idle_load wayfinder: %v watches opened on etcd, want one per service (%d)", got, cfg.IdleServices)
	}
	// Alone, on fake ClientConns, the same: Wayfinder's resolvers with a
	// Cache of their own open one watch per service, etcd's one each.
	if got := metric(t, rep, "idle_load", "etcd", "wayfinder", "resolver_server_watchers"); got != float64(cfg.IdleServices) {
		t.Errorf("idle_load wayfinder, resolvers alone: %v watches opened on etcd, want %d", got, cfg.IdleServices)
	}
	if got := metric(t, rep, "idle_load", "etcd", namingVariant, "resolver_server_watchers"); got != float64(cfg.IdleConns) {
		t.Errorf("idle_load %s, resolvers alone: %v watches opened on etcd, want %d", namingVariant, got, cfg.IdleConns)
	}
	for _, v := range []string{"wayfinder", namingVariant} {
		if got := metric(t, rep, "idle_load", "etcd", v, "goroutines_per_conn"); !(got > 0) {
			t.Errorf("idle_load %s: %v goroutines per ClientConn, want some (connected ClientConns run gRPC's)", v, got)
		}
	}
}

// checkEtcdNamingReport checks that the report renders section 9, with
// its chart, from rep.
func checkEtcdNamingReport(t *testing.T, rep *Report) {
	t.Helper()
	checkReport(t, rep, []string{"## 9. Against etcd's own naming resolver", "| watches on etcd per service |", "benchmarks/etcd_naming.svg", "etcd's naming resolver ("}, "etcd_naming.svg")
}
