package p2c

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	gbalancer "google.golang.org/grpc/balancer"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/fakecc"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

func instances(n int) []registry.Instance {
	out := make([]registry.Instance, n)
	for i := range out {
		out[i] = registry.Instance{ID: fmt.Sprint(i), Service: "s", Address: fmt.Sprintf("10.0.0.%d:80", i+1)}
	}
	return out
}

// drive makes n picks, each taking latency(addr) on the fake clock, and
// returns the picks per address.
func drive(t *testing.T, h *fakecc.Harness, clock *atomic.Int64, n int, latency func(string) time.Duration) map[string]int {
	t.Helper()
	names := map[gbalancer.SubConn]string{}
	for _, sc := range h.CC.SubConns() {
		names[sc] = sc.Addr
	}
	out := map[string]int{}
	for range n {
		p, _ := h.CC.Picker()
		r, err := p.Pick(gbalancer.PickInfo{Ctx: context.Background()})
		if err != nil {
			t.Fatalf("Pick() = %v", err)
		}
		addr := names[r.SubConn]
		out[addr]++
		clock.Add(int64(latency(addr)))
		r.Done(gbalancer.DoneInfo{})
	}
	return out
}

// TestStatsSurvive checks that a slow endpoint's statistics survive a
// picker rebuild (another endpoint failing and returning) and a resolver
// update (an instance added and one re-weighted): the slow endpoint keeps
// being avoided at once, with no new warm-up.
func TestStatsSurvive(t *testing.T) {
	var clock atomic.Int64
	pol := &policy{stats: map[string]*stats{}, clock: clock.Load}
	pol.cfg, _ = ParseConfig(nil)
	h := fakecc.BuildWith(func(cc gbalancer.ClientConn) gbalancer.Balancer {
		return shard.New(cc, gbalancer.BuildOptions{}, pol)
	}, pol.cfg)
	defer h.Close()
	insts := instances(4)
	if err := h.Update(resolver.Endpoints(insts)); err != nil {
		t.Fatal(err)
	}
	h.ReadyAll()
	slow := insts[3].Address
	latency := func(addr string) time.Duration {
		if addr == slow {
			return 100 * time.Millisecond
		}
		return time.Millisecond
	}
	drive(t, h, &clock, 200, latency)
	before := pol.stats[slow]

	h.Fail(insts[0].Address) // rebuilds the picker twice
	h.ReadyAll()
	insts[1].Weight = 5
	insts = append(insts, registry.Instance{ID: "new", Service: "s", Address: "10.0.0.99:80"})
	if err := h.Update(resolver.Endpoints(insts)); err != nil {
		t.Fatal(err)
	}
	h.ReadyAll()

	if pol.stats[slow] != before {
		t.Fatalf("stats of %s were replaced by a picker rebuild or resolver update", slow)
	}
	got := drive(t, h, &clock, 400, latency)
	if got[slow] > 20 {
		t.Errorf("after updates, the slow endpoint got %d of 400 picks, want <= 20 (5%%): %v", got[slow], got)
	}

	// Gone from the resolver: forgotten.
	if err := h.Update(resolver.Endpoints(insts[:3])); err != nil {
		t.Fatal(err)
	}
	if _, ok := pol.stats[slow]; ok {
		t.Errorf("stats of removed endpoint %s are still kept", slow)
	}
}

// TestDecayRetries checks that an endpoint avoided for being slow is
// tried again once its estimate has decayed.
func TestDecayRetries(t *testing.T) {
	var clock atomic.Int64
	pol := &policy{stats: map[string]*stats{}, clock: clock.Load}
	pol.cfg, _ = ParseConfig([]byte(`{"decay":"1s"}`))
	h := fakecc.BuildWith(func(cc gbalancer.ClientConn) gbalancer.Balancer {
		return shard.New(cc, gbalancer.BuildOptions{}, pol)
	}, pol.cfg)
	defer h.Close()
	insts := instances(2)
	if err := h.Update(resolver.Endpoints(insts)); err != nil {
		t.Fatal(err)
	}
	h.ReadyAll()
	slowOnce := true
	drive(t, h, &clock, 50, func(addr string) time.Duration {
		if addr == insts[1].Address && slowOnce {
			slowOnce = false
			return 500 * time.Millisecond
		}
		return time.Millisecond
	})
	fast := func(string) time.Duration { return time.Millisecond }
	if got := drive(t, h, &clock, 50, fast); got[insts[1].Address] != 0 {
		t.Fatalf("right after a slow call, %s got %d of 50 picks, want 0", insts[1].Address, got[insts[1].Address])
	}
	clock.Add(int64(20 * time.Second))
	if got := drive(t, h, &clock, 50, fast); got[insts[1].Address] == 0 {
		t.Fatalf("20 decay periods later, %s got no picks: it is never retried", insts[1].Address)
	}
}
