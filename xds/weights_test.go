package xds_test

import (
	"testing"

	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/server"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

// TestZoneWeights: zones are localities weighted by their instances'
// weights, and every client language honours them: with a (weight 3) in
// one zone and b (weight 1) in another, a gets 3/4 of the calls. Over
// 4,000 calls the share's standard deviation is under 0.7 points, so
// 70-80% is more than 7 of them either way.
func TestZoneWeights(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	startHello(t, reg, "a", server.WithZone("z1"), server.WithWeight(3))
	startHello(t, reg, "b", server.WithZone("z2"))
	_, addr, _ := startXDS(t, reg, "127.0.0.1:0")
	clients := []*client{startClient(t, "go", addr), startPython(t, "python", addr), startNode(t, "node", addr)}
	for _, c := range clients {
		c.waitPicks(t, 0, "a", "b")
	}
	const n = 4000
	for _, c := range clients {
		mark := c.calls()
		c.waitCalls(t, mark, n)
		picks := c.picksSince(mark)[:n]
		share := float64(counts(picks)["a"]) / n
		if share < 0.70 || share > 0.80 {
			t.Errorf("%s: a got %.1f%% of %d calls, want 75%% (70-80)", c.name, 100*share, n)
		}
	}
}

// TestCanarySplit: xds.WithCanary sends 10% of the calls to the
// instances of version v2, in every client language (4,000 calls: the
// share's standard deviation is under 0.5 points, 7-13% is over 6 of
// them); while the canary has no instance the others get every call,
// with no call failed when the canary leaves or returns.
func TestCanarySplit(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	startHello(t, reg, "a", server.WithVersion("v1"))
	startHello(t, reg, "b", server.WithVersion("v1"))
	c := startHello(t, reg, "c", server.WithVersion("v2"))
	_, addr, _ := startXDS(t, reg, "127.0.0.1:0", xds.WithCanary("hello", "v2", 10))
	clients := []*client{startClient(t, "go", addr), startPython(t, "python", addr), startNode(t, "node", addr)}
	for _, cl := range clients {
		cl.waitPicks(t, 0, "a", "b", "c")
	}
	const n = 4000
	for _, cl := range clients {
		mark := cl.calls()
		cl.waitCalls(t, mark, n)
		share := float64(counts(cl.picksSince(mark)[:n])["c"]) / n
		if share < 0.07 || share > 0.13 {
			t.Errorf("%s: the canary got %.1f%% of %d calls, want 10%% (7-13)", cl.name, 100*share, n)
		}
	}

	if err := reg.Deregister(t.Context(), c.Instance()); err != nil {
		t.Fatalf("Deregister(c) = %v", err)
	}
	for _, cl := range clients {
		cl.waitOnly(t, 300, "a", "b")
	}
	marks := make([]int, len(clients))
	for i, cl := range clients {
		marks[i] = cl.calls()
	}
	startHello(t, reg, "d", server.WithVersion("v2"))
	for i, cl := range clients {
		cl.waitPicks(t, marks[i], "a", "b", "d")
	}
}

// TestCanaries: two canaries of one service, v2 at 10% and v3 at 20%,
// with the stable set (v1) getting the rest, 70%, in the Go client
// (4,000 calls: standard deviations under 0.5 and 0.7 points, so 7-13%
// and 16-24% are over 5 of them). When v3 loses its last instance only
// the route changes: its share goes to the stable set, v2 keeps 10%, and
// no call fails, then or when v3 returns.
func TestCanaries(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	startHello(t, reg, "a", server.WithVersion("v1"))
	startHello(t, reg, "b", server.WithVersion("v1"))
	startHello(t, reg, "c", server.WithVersion("v2"))
	d := startHello(t, reg, "d", server.WithVersion("v3"))
	_, addr, _ := startXDS(t, reg, "127.0.0.1:0", xds.WithCanary("hello", "v2", 10), xds.WithCanary("hello", "v3", 20))
	cl := startClient(t, "go", addr)
	cl.waitPicks(t, 0, "a", "b", "c", "d")
	const n = 4000
	share := func(names ...string) map[string]float64 {
		mark := cl.calls()
		cl.waitCalls(t, mark, n)
		c := counts(cl.picksSince(mark)[:n])
		m := map[string]float64{}
		for _, name := range names {
			m[name] = float64(c[name]) / n
		}
		return m
	}
	got := share("a", "b", "c", "d")
	t.Logf("shares: v1 %.1f%%, v2 %.1f%%, v3 %.1f%%", 100*(got["a"]+got["b"]), 100*got["c"], 100*got["d"])
	if v2, v3, v1 := got["c"], got["d"], got["a"]+got["b"]; v2 < 0.07 || v2 > 0.13 || v3 < 0.16 || v3 > 0.24 || v1 < 0.65 || v1 > 0.75 {
		t.Errorf("shares of %d calls: v1 %.1f%%, v2 %.1f%%, v3 %.1f%%; want 70%% (65-75), 10%% (7-13), 20%% (16-24)", n, 100*v1, 100*v2, 100*v3)
	}

	if err := reg.Deregister(t.Context(), d.Instance()); err != nil {
		t.Fatalf("Deregister(d) = %v", err)
	}
	cl.waitOnly(t, 300, "a", "b", "c")
	got = share("a", "b", "c")
	t.Logf("shares without v3: v1 %.1f%%, v2 %.1f%%", 100*(got["a"]+got["b"]), 100*got["c"])
	if v2, v1 := got["c"], got["a"]+got["b"]; v2 < 0.07 || v2 > 0.13 || v1 < 0.87 || v1 > 0.93 {
		t.Errorf("without v3, shares of %d calls: v1 %.1f%%, v2 %.1f%%; want 90%% (87-93), 10%% (7-13)", n, 100*v1, 100*v2)
	}
	mark := cl.calls()
	startHello(t, reg, "e", server.WithVersion("v3"))
	cl.waitPicks(t, mark, "a", "b", "c", "e")
}

func TestCanaryOptions(t *testing.T) {
	reg := memory.New()
	t.Cleanup(func() { reg.Close() })
	for _, o := range [][]xds.Option{
		{xds.WithCanary("hello", "v2", 60), xds.WithCanary("hello", "v3", 40)}, // none left for the stable set
		{xds.WithCanary("hello", "v2", 10), xds.WithCanary("hello", "v2", 5)},
	} {
		if s, err := xds.New(reg, o...); err == nil {
			s.Close()
			t.Errorf("xds.New with invalid canaries: nil error")
		}
	}
	if s, err := xds.New(reg, xds.WithCanary("hello", "v2", 60), xds.WithCanary("hello", "v3", 39)); err != nil {
		t.Errorf("xds.New with canaries of 60%% and 39%% = %v", err)
	} else {
		s.Close()
	}
	for _, o := range []xds.Option{
		xds.WithCanary("hello", "v2", 0),
		xds.WithCanary("hello", "v2", 100),
		xds.WithCanary("hello", "", 10),
		xds.WithCanary("hello", "a/b", 10),
		xds.WithCanary("-bad", "v2", 10),
	} {
		if s, err := xds.New(reg, o); err == nil {
			s.Close()
			t.Errorf("xds.New with an invalid canary: nil error")
		}
	}
}
