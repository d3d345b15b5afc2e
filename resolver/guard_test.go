package resolver_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

func guarded(t *testing.T, hold time.Duration) (*memory.Registry, *resolver.Cache, *fakeCC) {
	reg := memory.New()
	for i := range 6 {
		if err := reg.Register(t.Context(), inst6(i)); err != nil {
			t.Fatal(err)
		}
	}
	cache := newCache(t, resolver.WithMassRemovalGuard(0.5, 4, hold))
	cc := newFakeCC()
	r := build(t, resolver.NewBuilder(reg, resolver.WithCache(cache)), "wayfinder:///hello", cc)
	t.Cleanup(r.Close)
	cc.wait(t, "pushed 6", func(int, int) bool { return lastLen(cc) == 6 })
	return reg, cache, cc
}

func inst6(i int) registry.Instance {
	return registry.Instance{ID: fmt.Sprintf("i%d", i), Service: "hello", Address: fmt.Sprintf("127.0.0.1:%d", 2000+i)}
}

func lastLen(cc *fakeCC) int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.states) == 0 {
		return -1
	}
	return len(cc.states[len(cc.states)-1].Endpoints)
}

func minPushed(cc *fakeCC) int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	m := 1 << 30
	for _, s := range cc.states {
		m = min(m, len(s.Endpoints))
	}
	return m
}

// TestMassRemovalHeldAndRestored: most of a service vanishes (as in a
// registry agent's restart) and comes back within the hold: clients
// never lose more than the threshold allows.
func TestMassRemovalHeldAndRestored(t *testing.T) {
	reg, cache, cc := guarded(t, time.Minute)
	for i := range 5 {
		if err := reg.Deregister(t.Context(), inst6(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the hold", func() bool { return cache.Watches()[0].Holding })
	for i := range 5 {
		if err := reg.Register(t.Context(), inst6(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the hold to clear", func() bool { return !cache.Watches()[0].Holding })
	if m, l := minPushed(cc), lastLen(cc); m < 3 || l != 6 {
		t.Fatalf("pushed at least %d endpoints and finally %d; want never below 3 (half of 6) and finally 6", m, l)
	}
	if h := cache.Watches()[0].Held; h != 1 {
		t.Fatalf("mass removals held = %d, want 1", h)
	}
}

// TestMassRemovalAppliedAfterHold: a real mass removal is applied once
// the hold ends; a real empty service is reported empty.
func TestMassRemovalAppliedAfterHold(t *testing.T) {
	const hold = 300 * time.Millisecond
	reg, cache, cc := guarded(t, hold)
	start := time.Now()
	for i := range 6 {
		if err := reg.Deregister(t.Context(), inst6(i)); err != nil {
			t.Fatal(err)
		}
	}
	cc.wait(t, "the empty set", func(int, int) bool { return lastLen(cc) == 0 })
	if took := time.Since(start); took < hold {
		t.Fatalf("the mass removal reached the ClientConn after %v, before the %v hold", took, hold)
	}
	if m := minPushed(cc); m != 0 {
		t.Fatalf("min pushed = %d, want the final 0", m)
	}
	if w := cache.Watches()[0]; w.Holding || w.Held != 1 {
		t.Fatalf("after the hold: Holding=%v Held=%d, want false, 1", w.Holding, w.Held)
	}
}

// TestRollingReplacementNotHeld: replacing every instance, one at a time,
// keeps the service's size and is never held.
func TestRollingReplacementNotHeld(t *testing.T) {
	reg, cache, cc := guarded(t, time.Minute)
	for i := range 6 {
		if err := reg.Register(t.Context(), inst6(10+i)); err != nil {
			t.Fatal(err)
		}
		if err := reg.Deregister(t.Context(), inst6(i)); err != nil {
			t.Fatal(err)
		}
	}
	cc.wait(t, "the replaced set", func(int, int) bool {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		last := cc.states[len(cc.states)-1]
		inst, _ := resolver.InstanceFromEndpoint(last.Endpoints[0])
		return len(last.Endpoints) == 6 && inst.ID == "i10"
	})
	if h := cache.Watches()[0].Held; h != 0 {
		t.Fatalf("a rolling replacement was held %d time(s), want 0", h)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
