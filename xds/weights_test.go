package xds_test

import (
	"testing"

	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/server"
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
