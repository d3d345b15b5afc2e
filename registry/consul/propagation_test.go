package consul_test

import (
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/cctest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// TestPropagationMetric: a Register on Consul reaches a ClientConn and
// is observed once, with a plausible latency. Then the dev agent is
// killed and comes back empty; the registrant registers everything
// again with the original stamps, so clients see no change: the
// guard (set here to hold every removal) keeps the vanished instances,
// their return is no update, and nothing more is observed.
func TestPropagationMetric(t *testing.T) {
	agent := testenv.StartConsul(t)
	server := newReg(t, agent.HTTPAddr(), fast)
	client := newReg(t, agent.HTTPAddr(), fast)
	svc := registrytest.ServiceName(t)
	a, b, c := registrytest.MakeInstance(svc, 1), registrytest.MakeInstance(svc, 2), registrytest.MakeInstance(svc, 3)
	register := func(inst registry.Instance) {
		t.Helper()
		if err := server.Register(ctxT(t, 10*time.Second), inst); err != nil {
			t.Fatalf("Register(%v) = %v", inst, err)
		}
	}
	register(a)
	register(b)

	cc, reader, cache := cctest.Resolve(t, client, svc, resolver.WithMassRemovalGuard(0, 1, time.Minute))
	lastIs := func(want ...string) func() bool {
		return func() bool {
			sets, _, _ := cc.Snapshot()
			return len(sets) > 0 && sameIDs(sets[len(sets)-1], want...)
		}
	}
	wait.For(t, 10*time.Second, "pushed a and b", lastIs(a.ID, b.ID))
	if n, _, _ := cctest.PropagationStats(t, reader); n != 0 {
		t.Fatalf("propagation count after the first set = %d, want 0", n)
	}

	start := time.Now()
	register(c)
	wait.For(t, 10*time.Second, "pushed a, b and c", lastIs(a.ID, b.ID, c.ID))
	// The resolver records the change after gRPC's UpdateState returns.
	wait.For(t, 10*time.Second, "the change observed", func() bool { n, _, _ := cctest.PropagationStats(t, reader); return n >= 1 })
	n, lo, hi := cctest.PropagationStats(t, reader)
	if n != 1 || lo < 0 || hi > time.Since(start).Seconds() || hi > 30 {
		t.Fatalf("propagation after registering c = %d observations in [%v, %v] s; want 1 within 0..%v", n, lo, hi, time.Since(start).Seconds())
	}
	t.Logf("consul: registration to ClientConn in %.1f ms", hi*1000)
	stamps := lookupUntil(t, client, svc, 5*time.Second, "a, b and c", func(in []registry.Instance) bool { return sameIDs(in, a.ID, b.ID, c.ID) })
	sets, _, _ := cc.Snapshot()
	pushedBefore, want := len(sets), sets[len(sets)-1]

	agent.Kill()
	waitStatus(t, server, a, 10*time.Second, "retrying", func(s registry.RegistrationStatus) bool { return s.State == registry.StateRetrying })
	agent.Start(t)
	for _, inst := range []registry.Instance{a, b, c} {
		waitStatus(t, server, inst, 20*time.Second, "re-registered", func(s registry.RegistrationStatus) bool {
			return s.State == registry.StateRegistered && s.Registrations >= 2
		})
	}
	again := lookupUntil(t, client, svc, 10*time.Second, "a, b and c", func(in []registry.Instance) bool { return sameIDs(in, a.ID, b.ID, c.ID) })
	for i := range again {
		if !again[i].Registered.Equal(stamps[i].Registered) {
			t.Errorf("%s: Registered = %v after re-registration, want the original %v", again[i].ID, again[i].Registered, stamps[i].Registered)
		}
	}
	wait.For(t, 20*time.Second, "fresh again, holding nothing, and pushed after the last error", func() bool {
		ws := cache.Watches()
		sets, errs, errAfter := cc.Snapshot()
		return len(ws) == 1 && ws[0].Fresh && !ws[0].Holding && sameIDs(ws[0].Instances, a.ID, b.ID, c.ID) &&
			errs > 0 && len(sets) > errAfter
	})
	sets, _, _ = cc.Snapshot()
	for i, set := range sets[pushedBefore:] {
		if !driver.EqualSets(set, want) {
			t.Errorf("push %d after the restart = %v, want the unchanged %v", i, ids(set), ids(want))
		}
	}
	if n2, _, hi2 := cctest.PropagationStats(t, reader); n2 != n {
		t.Errorf("propagation count after the restart = %d (max %v s), want still %d", n2, hi2, n)
	}
}
