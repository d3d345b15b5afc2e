package etcd_test

import (
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/cctest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// TestPropagationMetric: a Register on etcd reaches a ClientConn and is
// observed once, with a plausible latency. Then the registrant's lease
// is revoked elsewhere, deleting every key at once as an expiry would;
// the keeper puts the same values back under a new lease, so clients
// see no change: the guard (set here to hold every removal) keeps the
// vanished instances, their return is no update, and nothing more is
// observed.
func TestPropagationMetric(t *testing.T) {
	srv := testenv.StartEtcd(t)
	admin := testenv.NewEtcdClient(t, nil, srv.Endpoint())
	server := newRegistry(t, []string{srv.Endpoint()}, etcd.WithTTL(2*time.Second))
	client := newRegistry(t, []string{srv.Endpoint()})
	svc := svcName(t)
	a, b, c := inst(svc, 1), inst(svc, 2), inst(svc, 3)
	register := func(in registry.Instance) {
		t.Helper()
		if err := server.Register(ctxFor(t, 10*time.Second), in); err != nil {
			t.Fatalf("Register(%v) = %v", in, err)
		}
	}
	register(a)
	register(b)

	cc, reader, cache := cctest.Resolve(t, client, svc, resolver.WithMassRemovalGuard(0, 1, time.Minute))
	lastIs := func(want ...registry.Instance) func() bool {
		return func() bool {
			sets, _, _ := cc.Snapshot()
			return len(sets) > 0 && sameIDs(sets[len(sets)-1], want...)
		}
	}
	wait.For(t, 10*time.Second, "pushed a and b", lastIs(a, b))
	if n, _, _ := cctest.PropagationStats(t, reader); n != 0 {
		t.Fatalf("propagation count after the first set = %d, want 0", n)
	}

	start := time.Now()
	register(c)
	wait.For(t, 10*time.Second, "pushed a, b and c", lastIs(a, b, c))
	// The resolver records the change after gRPC's UpdateState returns.
	wait.For(t, 10*time.Second, "the change observed", func() bool { n, _, _ := cctest.PropagationStats(t, reader); return n >= 1 })
	n, lo, hi := cctest.PropagationStats(t, reader)
	if n != 1 || lo < 0 || hi > time.Since(start).Seconds() || hi > 30 {
		t.Fatalf("propagation after registering c = %d observations in [%v, %v] s; want 1 within 0..%v", n, lo, hi, time.Since(start).Seconds())
	}
	t.Logf("etcd: registration to ClientConn in %.1f ms", hi*1000)
	stamps, err := client.Lookup(ctxFor(t, 5*time.Second), svc)
	if err != nil || !sameIDs(stamps, a, b, c) {
		t.Fatalf("Lookup = %v, %v", ids(stamps), err)
	}
	sets, _, _ := cc.Snapshot()
	pushedBefore, want := len(sets), sets[len(sets)-1]

	old := server.LeaseState()
	if _, err := admin.Revoke(ctxFor(t, 5*time.Second), old.Lease); err != nil {
		t.Fatal(err)
	}
	waitState(t, server, 15*time.Second, "a new lease", func(s etcd.LeaseState) bool {
		return s.Healthy() && s.Lease != 0 && s.Lease != old.Lease
	})
	wait.For(t, 20*time.Second, "held the removal, then got everything back", func() bool {
		ws := cache.Watches()
		return len(ws) == 1 && ws[0].Held >= 1 && ws[0].Fresh && !ws[0].Holding && sameIDs(ws[0].Instances, a, b, c)
	})
	again, err := client.Lookup(ctxFor(t, 5*time.Second), svc)
	if err != nil || !sameIDs(again, a, b, c) {
		t.Fatalf("Lookup after the re-put = %v, %v", ids(again), err)
	}
	for i := range again {
		if !again[i].Registered.Equal(stamps[i].Registered) {
			t.Errorf("%s: Registered = %v after the re-put, want the original %v", again[i].ID, again[i].Registered, stamps[i].Registered)
		}
	}
	time.Sleep(100 * time.Millisecond) // let the resolver act on the last wake-up, if it would
	sets, _, _ = cc.Snapshot()
	for i, set := range sets[pushedBefore:] {
		if !driver.EqualSets(set, want) {
			t.Errorf("push %d after the revoke = %v, want the unchanged %v", i, ids(set), ids(want))
		}
	}
	if n2, _, hi2 := cctest.PropagationStats(t, reader); n2 != n {
		t.Errorf("propagation count after the re-put = %d (max %v s), want still %d", n2, hi2, n)
	}
}

// TestUnstampedValuesDecode: values without a stamp (older Wayfinder
// versions, other writers) or with a malformed one are instances with
// no stamp; a resolver does not observe them.
func TestUnstampedValuesDecode(t *testing.T) {
	srv := testenv.StartEtcd(t)
	admin := testenv.NewEtcdClient(t, nil, srv.Endpoint())
	r := newRegistry(t, []string{srv.Endpoint()})
	svc := svcName(t)
	base := r.Prefix() + "/" + svc + "/"
	values := map[string]string{
		"old":  `{"v":1,"id":"old","service":"` + svc + `","address":"127.0.0.1:1"}`,
		"bad":  `{"v":1,"id":"bad","service":"` + svc + `","address":"127.0.0.1:2","registered":"yesterday"}`,
		"good": `{"v":1,"id":"good","service":"` + svc + `","address":"127.0.0.1:3","registered":"2026-01-02T03:04:05.123456789Z"}`,
	}
	for id, v := range values {
		if _, err := admin.Put(ctxFor(t, 5*time.Second), base+id, v); err != nil {
			t.Fatal(err)
		}
	}
	got, err := r.Lookup(ctxFor(t, 5*time.Second), svc)
	if err != nil || len(got) != 3 {
		t.Fatalf("Lookup = %v, %v; want bad, good and old", ids(got), err)
	}
	want := map[string]time.Time{"bad": {}, "good": time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC), "old": {}}
	for _, in := range got {
		if !in.Registered.Equal(want[in.ID]) {
			t.Errorf("%s: Registered = %v, want %v", in.ID, in.Registered, want[in.ID])
		}
	}
}
