package p2c

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/fakecc"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

func instances(n int) []registry.Instance {
	out := make([]registry.Instance, n)
	for i := range out {
		out[i] = registry.Instance{ID: fmt.Sprint(i), Service: "s", Address: fmt.Sprintf("10.0.0.%d:80", i+1)}
	}
	return out
}

// fakeClock is a manual clock. Exact clocks time every call; a coarse
// one leaves calls to sampling, as the system clock does under load.
type fakeClock struct {
	atomic.Int64
	coarse bool
}

func (c *fakeClock) Now() (int64, bool) { return c.Load(), !c.coarse }
func (c *fakeClock) Exact() int64       { return c.Load() }

// drive makes n picks, each taking latency(addr) on the fake clock, and
// returns the picks per address.
func drive(t *testing.T, h *fakecc.Harness, clock *fakeClock, n int, latency func(string) time.Duration) map[string]int {
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
	var clock fakeClock
	pol := newPolicy(nil, &clock)
	pol.cfg, _ = ParseConfig(nil)
	h := fakecc.BuildWith(func(cc gbalancer.ClientConn) gbalancer.Balancer {
		return shard.New(cc, gbalancer.BuildOptions{}, pol)
	}, pol.cfg)
	defer h.Close()
	insts := instances(4)
	if err := h.Update(instance.Endpoints(insts)); err != nil {
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
	before := pol.statsOf(slow)

	h.Fail(insts[0].Address) // rebuilds the picker twice
	h.ReadyAll()
	insts[1].Weight = 5
	insts = append(insts, registry.Instance{ID: "new", Service: "s", Address: "10.0.0.99:80"})
	if err := h.Update(instance.Endpoints(insts)); err != nil {
		t.Fatal(err)
	}
	h.ReadyAll()

	if pol.statsOf(slow) != before {
		t.Fatalf("stats of %s were replaced by a picker rebuild or resolver update", slow)
	}
	got := drive(t, h, &clock, 400, latency)
	if got[slow] > 20 {
		t.Errorf("after updates, the slow endpoint got %d of 400 picks, want <= 20 (5%%): %v", got[slow], got)
	}

	// Gone from the resolver: forgotten.
	if err := h.Update(instance.Endpoints(insts[:3])); err != nil {
		t.Fatal(err)
	}
	if pol.statsOf(slow) != nil {
		t.Errorf("stats of removed endpoint %s are still kept", slow)
	}
}

// TestDecayRetries checks that an endpoint avoided for being slow is
// tried again once its estimate has decayed.
func TestDecayRetries(t *testing.T) {
	var clock fakeClock
	pol := newPolicy(nil, &clock)
	pol.cfg, _ = ParseConfig([]byte(`{"decay":"1s"}`))
	h := fakecc.BuildWith(func(cc gbalancer.ClientConn) gbalancer.Balancer {
		return shard.New(cc, gbalancer.BuildOptions{}, pol)
	}, pol.cfg)
	defer h.Close()
	insts := instances(2)
	if err := h.Update(instance.Endpoints(insts)); err != nil {
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

// newHarness builds the policy over 4 ready endpoints with clk.
func newHarness(t *testing.T, clk *fakeClock) (*fakecc.Harness, *policy, []registry.Instance) {
	t.Helper()
	pol := newPolicy(nil, clk)
	pol.cfg, _ = ParseConfig(nil)
	h := fakecc.BuildWith(func(cc gbalancer.ClientConn) gbalancer.Balancer {
		return shard.New(cc, gbalancer.BuildOptions{}, pol)
	}, pol.cfg)
	t.Cleanup(h.Close)
	insts := instances(4)
	if err := h.Update(instance.Endpoints(insts)); err != nil {
		t.Fatal(err)
	}
	h.ReadyAll()
	return h, pol, insts
}

// TestSampledSlowAvoided: with a coarse clock, as under load, only some
// calls are timed; a slow endpoint is still found and avoided.
func TestSampledSlowAvoided(t *testing.T) {
	clk := &fakeClock{coarse: true}
	h, _, insts := newHarness(t, clk)
	slow := insts[3].Address
	latency := func(addr string) time.Duration {
		if addr == slow {
			return 100 * time.Millisecond
		}
		return time.Millisecond
	}
	drive(t, h, clk, 1000, latency) // warm-up: enough for samples of each
	if got := drive(t, h, clk, 2000, latency); got[slow] > 100 {
		t.Errorf("with sampled timing, the slow endpoint got %d of 2000 picks, want <= 100 (5%%): %v", got[slow], got)
	}
}

// TestSampledFailuresCount: with a coarse clock, every failure counts,
// timed or not, so an endpoint failing fast is avoided at once.
func TestSampledFailuresCount(t *testing.T) {
	clk := &fakeClock{coarse: true}
	h, pol, insts := newHarness(t, clk)
	bad := insts[0].Address
	names := map[gbalancer.SubConn]string{}
	for _, sc := range h.CC.SubConns() {
		names[sc] = sc.Addr
	}
	p, _ := h.CC.Picker()
	got := map[string]int{}
	for range 2000 {
		r, err := p.Pick(gbalancer.PickInfo{Ctx: context.Background()})
		if err != nil {
			t.Fatal(err)
		}
		addr := names[r.SubConn]
		got[addr]++
		clk.Add(int64(time.Millisecond))
		var di gbalancer.DoneInfo
		if addr == bad {
			di.Err = status.Error(codes.Unavailable, "down")
		}
		r.Done(di)
	}
	if got[bad] > 100 {
		t.Errorf("failing endpoint got %d of 2000 picks, want <= 100 (5%%): %v", got[bad], got)
	}
	for _, s := range pol.stats {
		addr := s.addr
		if n := s.inflight.Load(); n != 0 {
			t.Errorf("%s: %d calls still counted in flight after all ended", addr, n)
		}
		if n := s.timed.Load(); n != 0 {
			t.Errorf("%s: %d timed calls still counted after all ended", addr, n)
		}
		if n := s.startSum.Load(); n != 0 {
			t.Errorf("%s: start-time sum %d after all calls ended, want 0", addr, n)
		}
	}
}

// TestUntimedPickAllocs: a call that is not timed allocates nothing.
func TestUntimedPickAllocs(t *testing.T) {
	clk := &fakeClock{coarse: true}
	h, _, _ := newHarness(t, clk)
	p, _ := h.CC.Picker()
	info := gbalancer.PickInfo{Ctx: context.Background()}
	allocs := testing.AllocsPerRun(10000, func() {
		r, err := p.Pick(info)
		if err != nil {
			t.Fatal(err)
		}
		r.Done(gbalancer.DoneInfo{})
	})
	// One call in 16 is timed and allocates its Done; the mean must stay
	// well below 1 (AllocsPerRun rounds down).
	if allocs != 0 {
		t.Errorf("Pick+Done allocates %v times per call, want 0 on average", allocs)
	}
}

// TestUntimedFailureCharged: a call that was not timed still charges the
// error penalty when it fails on the endpoint, and only then.
func TestUntimedFailureCharged(t *testing.T) {
	clk := &fakeClock{coarse: true}
	par := &params{tau: float64(DefaultDecay), penalty: float64(DefaultErrorPenalty), decayAfter: int64(DefaultDecay / 1000), clock: clk}
	for _, tc := range []struct {
		err  error
		want float64
	}{
		{nil, 0},
		{status.Error(codes.Unavailable, "down"), par.penalty},
		{status.Error(codes.Internal, "broken"), par.penalty},
		{status.Error(codes.Canceled, "caller gave up"), 0},
		{status.Error(codes.NotFound, "no such user"), 0},
	} {
		s := newStats(0, 0, par)
		s.inflight.Add(1)
		s.done(gbalancer.DoneInfo{Err: tc.err})
		if got := s.cost(0, par); got != tc.want {
			t.Errorf("after an untimed call ending in %v, cost = %v, want %v", tc.err, got, tc.want)
		}
		if n := s.inflight.Load(); n != 0 {
			t.Errorf("after an untimed call ending in %v, %d in flight, want 0", tc.err, n)
		}
	}
}

// statsOf returns the statistics of the endpoint at addr, nil if none.
func (p *policy) statsOf(addr string) *stats {
	for _, s := range p.stats {
		if s.addr == addr {
			return s
		}
	}
	return nil
}
