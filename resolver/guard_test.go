package resolver_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	gresolver "google.golang.org/grpc/resolver"

	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// scripted is an upstream whose watcher returns the sets the test sends,
// one update each: it stands in for a registry that answers a whole new
// set at once, as a restarted Consul agent does.
type scripted struct{ sets chan []registry.Instance }

func (s scripted) Lookup(context.Context, string) ([]registry.Instance, error) { return nil, nil }
func (s scripted) Watch(context.Context, string) (registry.Watcher, error) {
	return scriptedWatcher(s), nil
}

type scriptedWatcher struct{ sets chan []registry.Instance }

func (w scriptedWatcher) Next(ctx context.Context) ([]registry.Instance, error) {
	select {
	case s := <-w.sets:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
func (w scriptedWatcher) Close() error { return nil }

func insts(ids ...int) []registry.Instance {
	out := make([]registry.Instance, len(ids))
	for i, id := range ids {
		out[i] = registry.Instance{ID: fmt.Sprintf("i%d", id), Service: "hello", Address: fmt.Sprintf("127.0.0.1:%d", 2000+id)}
	}
	return out
}

func guarded(t *testing.T, hold time.Duration, opts ...resolver.CacheOption) (chan []registry.Instance, *resolver.Cache, *fakeCC) {
	up := scripted{sets: make(chan []registry.Instance)}
	cache := newCache(t, append([]resolver.CacheOption{resolver.WithMassRemovalGuard(0.5, 2, hold)}, opts...)...)
	cc := newFakeCC()
	r := build(t, resolver.NewBuilder(up, resolver.WithCache(cache)), "wayfinder:///hello", cc)
	t.Cleanup(r.Close)
	up.sets <- insts(0, 1, 2, 3, 4, 5)
	cc.wait(t, "pushed 6", func(int, int) bool { return lastLen(cc) == 6 })
	return up.sets, cache, cc
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

// TestMassRemovalHeldAndRestored: most of a service vanishes in one
// update (as behind a restarted agent) and comes back within the hold:
// clients keep every instance, and additions still flow.
func TestMassRemovalHeldAndRestored(t *testing.T) {
	sets, cache, cc := guarded(t, time.Minute)
	sets <- insts(0, 7) // 5 of 6 gone at once, and a new one
	cc.wait(t, "the addition", func(int, int) bool { return lastLen(cc) == 7 })
	if w := cache.Watches()[0]; !w.Holding || w.Held != 1 {
		t.Fatalf("after a mass removal: Holding=%v Held=%d, want true, 1", w.Holding, w.Held)
	}
	sets <- insts(0, 1, 2, 3, 4, 5, 7) // the registry remembers them
	wait.For(t, 10*time.Second, "the hold to clear", func() bool { return !cache.Watches()[0].Holding })
	if m, l := minPushed(cc), lastLen(cc); m < 6 || l != 7 {
		t.Fatalf("pushed at least %d endpoints and finally %d; want never below 6 and finally 7", m, l)
	}
}

// TestMassRemovalAppliedAfterHold: a real mass removal reaches clients
// once the hold ends; a real empty service is reported empty.
func TestMassRemovalAppliedAfterHold(t *testing.T) {
	const hold = 300 * time.Millisecond
	sets, cache, cc := guarded(t, hold)
	start := time.Now()
	sets <- insts()
	cc.wait(t, "the empty set", func(int, int) bool { return lastLen(cc) == 0 })
	if took := time.Since(start); took < hold {
		t.Fatalf("the mass removal reached the ClientConn after %v, before the %v hold", took, hold)
	}
	if w := cache.Watches()[0]; w.Holding || w.Held != 1 {
		t.Fatalf("after the hold: Holding=%v Held=%d, want false, 1", w.Holding, w.Held)
	}
}

// TestGradualAndRollingChangesNotHeld: instance replacements, and
// removals that leave at least half of the window's largest set, pass
// straight through; with no window (WithMassRemovalWindow(0)) each
// update is judged on its own, and removals one at a time pass down to
// the last instance.
func TestGradualAndRollingChangesNotHeld(t *testing.T) {
	sets, cache, cc := guarded(t, time.Minute)
	sets <- insts(10, 11, 12, 13, 14, 15) // every instance replaced at once
	cc.wait(t, "the replaced set", func(int, int) bool {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		inst, _ := instance.FromEndpoint(cc.states[len(cc.states)-1].Endpoints[0])
		return inst.ID == "i10"
	})
	for _, s := range [][]registry.Instance{insts(10, 11, 12, 13), insts(10, 11, 12)} {
		sets <- s
		cc.wait(t, fmt.Sprintf("%d instances", len(s)), func(int, int) bool { return lastLen(cc) == len(s) })
	}
	if h := cache.Watches()[0].Held; h != 0 {
		t.Fatalf("replacements and removals down to half were held %d time(s), want 0", h)
	}

	sets, cache, cc = guarded(t, time.Minute, resolver.WithMassRemovalWindow(0))
	for _, s := range [][]registry.Instance{insts(0, 1, 2), insts(0, 1), insts(0)} {
		sets <- s
		cc.wait(t, fmt.Sprintf("%d instances", len(s)), func(int, int) bool { return lastLen(cc) == len(s) })
	}
	if h := cache.Watches()[0].Held; h != 0 {
		t.Fatalf("with no window, removals one at a time were held %d time(s), want 0", h)
	}
}

// TestGuardWithRealRegistry: deregistering instances one by one through
// a real registry: the first removal of three reaches clients at once;
// the second, which leaves less than half of the window's three, within
// the hold, the guard's documented bound for a deliberate removal.
func TestGuardWithRealRegistry(t *testing.T) {
	const hold = 300 * time.Millisecond
	reg := memory.New()
	for _, in := range insts(0, 1, 2) {
		if err := reg.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	cache := newCache(t, resolver.WithMassRemovalGuard(0.5, 2, hold))
	cc := newFakeCC()
	r := build(t, resolver.NewBuilder(reg, resolver.WithCache(cache)), "wayfinder:///hello", cc)
	defer r.Close()
	cc.wait(t, "pushed 3", func(int, int) bool { return lastLen(cc) == 3 })
	if err := reg.Deregister(t.Context(), insts(0)[0]); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "the first removal", func() bool { return len(cache.Watches()[0].Instances) == 2 })
	if h := cache.Watches()[0].Held; h != 0 {
		t.Fatalf("the first removal was held")
	}
	start := time.Now()
	if err := reg.Deregister(t.Context(), insts(1)[0]); err != nil {
		t.Fatal(err)
	}
	cc.wait(t, "1 instance", func(int, int) bool { return lastLen(cc) == 1 })
	if took := time.Since(start); took < hold || took > hold+5*time.Second {
		t.Errorf("the second removal reached clients after %v, want within the %v hold (plus slack), not before", took, hold)
	}
}

// TestCascadeWithinWindowHeld: a service shrinks by steps of at most half
// each, all within the window, as Consul's passing view does after an
// agent restart (seen: [r2 r4 r5] → [r2 r4] → [r2]). Judged one
// update at a time every step passed; judged against the largest set of
// the window, the step that leaves less than half is held, and the
// instances come back without clients ever losing them.
func TestCascadeWithinWindowHeld(t *testing.T) {
	sets, cache, cc := guarded(t, time.Minute)
	for _, s := range [][]registry.Instance{insts(0, 1, 2, 3), insts(0, 1, 2), insts(0, 1), insts(0)} {
		sets <- s
	}
	wait.For(t, 10*time.Second, "a hold", func() bool { return cache.Watches()[0].Holding })
	sets <- insts(0, 1, 2, 3, 4, 5)
	wait.For(t, 10*time.Second, "the hold to clear", func() bool { return !cache.Watches()[0].Holding })
	cc.wait(t, "6 again", func(int, int) bool { return lastLen(cc) == 6 })
	if m := minPushed(cc); m < 3 {
		t.Fatalf("clients were pushed %d endpoints during the cascade, want never below 3 (half of 6)", m)
	}
}

// TestHoldNeverResurrects: a hold keeps what clients have, never an
// instance they were already told is gone. A server stopped while its
// Consul agent was down came back from the restarted agent as a ghost
// and left the passing set first ([a1 a2 ghost] → [a1 a2]); a step later
// a live server's restored check was still critical ([a1]), the guard
// held that loss against the window's largest set and put the ghost
// back into clients' sets with it, so they dialled a dead port again.
func TestHoldNeverResurrects(t *testing.T) {
	sets, cache, cc := guarded(t, time.Minute)
	sets <- insts(0, 1, 2, 3) // leaves 4 of 6: passes
	cc.wait(t, "4 pushed", func(int, int) bool { return lastLen(cc) == 4 })
	sets <- insts(0, 1) // 2 of the window's 6: held
	wait.For(t, 10*time.Second, "a hold", func() bool { return cache.Watches()[0].Holding })
	if w := cache.Watches()[0]; len(w.Instances) != 4 {
		t.Fatalf("while holding, clients have %v, want the 4 they had (i0..i3), not i4 and i5 again", w.Instances)
	}
	if n := lastLen(cc); n != 4 {
		t.Fatalf("while holding, clients were pushed %d endpoints, want the 4 they had", n)
	}
}

// TestLastInstanceCovered: the last instance of a service vanishing is
// held too (a one-instance service behind a restarting agent went empty
// for 4 s when this was found); if it stays gone, the empty set reaches clients
// once the hold ends.
func TestLastInstanceCovered(t *testing.T) {
	const hold = 300 * time.Millisecond
	up := scripted{sets: make(chan []registry.Instance)}
	cache := newCache(t, resolver.WithMassRemovalGuard(0.5, 2, hold))
	cc := newFakeCC()
	r := build(t, resolver.NewBuilder(up, resolver.WithCache(cache)), "wayfinder:///hello", cc)
	t.Cleanup(r.Close)
	up.sets <- insts(0)
	cc.wait(t, "pushed 1", func(int, int) bool { return lastLen(cc) == 1 })
	start := time.Now()
	up.sets <- insts()
	cc.wait(t, "the empty set", func(int, int) bool { return lastLen(cc) == 0 })
	if took := time.Since(start); took < hold {
		t.Fatalf("the last instance's removal reached the ClientConn after %v, before the %v hold", took, hold)
	}
	if w := cache.Watches()[0]; w.Held != 1 {
		t.Fatalf("Held = %d, want 1", w.Held)
	}
}

// keptIDs returns the IDs in a state's endpoints and the ones it says the
// guard keeps.
func keptIDs(s gresolver.State) (set, kept []string) {
	for _, ep := range s.Endpoints {
		inst, _ := instance.FromEndpoint(ep)
		set = append(set, inst.ID)
	}
	return set, resolver.KeptInstances(s)
}

// TestHeldStateSaysWhatItKeeps: a state the guard holds names the
// instances it keeps although the registry no longer lists them, so that
// a client (the fault suite's checker, a debugging policy) can tell the
// registry's set from the guard's additions; the registry's own sets say
// nothing. A resolver built during the hold is told at once, and one
// with a subset is told only of the kept instances in its subset.
func TestHeldStateSaysWhatItKeeps(t *testing.T) {
	sets, cache, cc := guarded(t, time.Minute)
	if _, kept := keptIDs(cc.lastState()); kept != nil {
		t.Fatalf("KeptInstances(first state) = %v, want nil", kept)
	}
	sets <- insts(0, 7) // 5 of 6 gone at once, and a new one: held
	cc.wait(t, "the addition", func(int, int) bool { return lastLen(cc) == 7 })
	set, kept := keptIDs(cc.lastState())
	if want := []string{"i1", "i2", "i3", "i4", "i5"}; !slices.Equal(kept, want) {
		t.Fatalf("held state %v: KeptInstances = %v, want %v", set, kept, want)
	}

	late := newFakeCC() // built during the hold: answered from the cache
	r := build(t, resolver.NewBuilder(scripted{sets}, resolver.WithCache(cache)), "wayfinder:///hello", late)
	defer r.Close()
	late.wait(t, "the cached state", func(n, _ int) bool { return n > 0 })
	if _, got := keptIDs(late.lastState()); !slices.Equal(got, kept) {
		t.Errorf("resolver built during the hold: KeptInstances = %v, want %v", got, kept)
	}

	sets <- insts(0, 1, 2, 3, 4, 5, 7, 8) // they come back, with another
	cc.wait(t, "8 instances", func(int, int) bool { return lastLen(cc) == 8 })
	if set, kept := keptIDs(cc.lastState()); kept != nil {
		t.Errorf("after the hold: state %v: KeptInstances = %v, want nil", set, kept)
	}
}

// TestHeldSubsetSaysWhatItKeeps: with WithConnectionSubset, a held state names
// only the kept instances in the resolver's subset.
func TestHeldSubsetSaysWhatItKeeps(t *testing.T) {
	up := scripted{sets: make(chan []registry.Instance)}
	cache := newCache(t, resolver.WithMassRemovalGuard(0.5, 2, time.Minute))
	cc := newFakeCC()
	r := build(t, resolver.NewBuilder(up, resolver.WithCache(cache), resolver.WithConnectionSubset(3, "client-a")), "wayfinder:///hello", cc)
	defer r.Close()
	all := insts(0, 1, 2, 3, 4, 5)
	up.sets <- all
	cc.wait(t, "pushed 3", func(int, int) bool { return lastLen(cc) == 3 })
	before, _ := keptIDs(cc.lastState())
	up.sets <- insts(9) // all gone, one new: held
	var set, kept []string
	cc.wait(t, "a held state", func(int, int) bool {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		set, kept = keptIDs(cc.states[len(cc.states)-1])
		return len(kept) > 0
	})
	for _, id := range kept {
		if !slices.Contains(set, id) {
			t.Errorf("KeptInstances = %v names %s, which is not in the state %v", kept, id, set)
		}
		if !slices.Contains(before, id) {
			t.Errorf("KeptInstances = %v names %s, which the resolver's subset %v did not have", kept, id, before)
		}
	}
	for _, id := range set {
		if id != "i9" && !slices.Contains(kept, id) {
			t.Errorf("state %v holds %s, which the registry no longer lists, but KeptInstances = %v omits it", set, id, kept)
		}
	}
}
