package zone_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	wbalancer "github.com/wayfinder-rpc/wayfinder/balancer"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	"github.com/wayfinder-rpc/wayfinder/balancer/zone"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/lbtest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start starts one backend per entry of zones, registered in that zone,
// and dials with cfg.
func start(t *testing.T, cfg string, zones ...string) ([]*lbtest.Backend, []registry.Instance, *lbtest.Env, hellopb.HelloServiceClient) {
	t.Helper()
	env := lbtest.NewEnv(t)
	bs := lbtest.StartBackends(t, len(zones))
	insts := make([]registry.Instance, len(bs))
	for i, b := range bs {
		insts[i] = lbtest.Instance(b)
		insts[i].Zone = zones[i]
		env.Register(insts[i])
	}
	_, client := env.Dial(`{"wayfinder_zone_aware":` + cfg + `}`)
	return bs, insts, env, client
}

func share(counts map[string]int, bs ...*lbtest.Backend) float64 {
	n, total := 0, 0
	for _, b := range bs {
		n += counts[b.Name]
	}
	for _, v := range counts {
		total += v
	}
	return float64(n) / float64(total)
}

func mustCount(t *testing.T, client hellopb.HelloServiceClient, n int) map[string]int {
	t.Helper()
	counts := lbtest.Counts(context.Background(), client, n, 4)
	if e := lbtest.Errors(counts); e > 0 {
		t.Fatalf("%d of %d calls failed: %v", e, n, counts)
	}
	return counts
}

// TestStaysLocalThenSpillsOver: calls stay in the local zone while enough
// of it is healthy, even with one backend down; below minLocalShare the
// local share falls in proportion.
func TestStaysLocalThenSpillsOver(t *testing.T) {
	bs, _, _, client := start(t, `{"localZone":"a","minLocalShare":0.5}`, "a", "a", "a", "a", "b", "b", "b", "b")
	local := bs[:4]
	lbtest.WaitServing(t, client, local...)
	if s := share(mustCount(t, client, 400), local...); s != 1 {
		t.Fatalf("local share with zone a healthy = %v, want 1", s)
	}

	// 3 of 4 healthy: 0.75 >= 0.5, all calls stay local.
	local[0].Stop()
	lbtest.WaitServing(t, client, local[1:]...)
	if s := share(mustCount(t, client, 400), local...); s != 1 {
		t.Fatalf("local share with 3 of 4 local backends healthy = %v, want 1", s)
	}

	// 1 of 4 healthy: 0.25/0.5 = half the calls stay local.
	local[1].Stop()
	local[2].Stop()
	wait.For(t, 20*time.Second, "half the calls to spill over", func() bool {
		s := share(lbtest.Counts(context.Background(), client, 200, 4), local[3])
		return s > 0.35 && s < 0.65
	})
	counts := mustCount(t, client, 2000)
	if s := share(counts, local[3]); math.Abs(s-0.5) > 0.06 {
		t.Errorf("local share with 1 of 4 local backends healthy and minLocalShare 0.5 = %.3f, want 0.5 ± 0.06: %v", s, counts)
	}
	if s := share(counts, bs[4:]...); s < 0.4 {
		t.Errorf("zone b got %.3f of calls, want the rest: %v", s, counts)
	}
}

// TestFailoverOrder: when the local zone is empty, calls go to the first
// zone of failoverOrder that has a healthy endpoint, skipping the local
// zone where it is listed.
func TestFailoverOrder(t *testing.T) {
	bs, _, _, client := start(t, `{"localZone":"a","failoverOrder":["a","c","b"]}`, "a", "b", "c")
	lbtest.WaitServing(t, client, bs[0])
	bs[0].Stop()
	lbtest.WaitServing(t, client, bs[2])
	if counts := mustCount(t, client, 200); counts["b2"] != 200 {
		t.Fatalf("calls with zone a down = %v, want all to b2 in zone c", counts)
	}
	bs[2].Stop()
	lbtest.WaitServing(t, client, bs[1])
	if counts := mustCount(t, client, 200); counts["b1"] != 200 {
		t.Fatalf("calls with zones a and c down = %v, want all to b1 in zone b", counts)
	}
}

// TestWeightedChild: wrapping wayfinder_weighted_round_robin, weights
// hold inside the local zone, and a live weight change moves the shares
// without reconnecting.
func TestWeightedChild(t *testing.T) {
	bs, insts, env, client := start(t, `{"localZone":"a","child":[{"wayfinder_weighted_round_robin":{}}]}`, "a", "a", "b")
	insts[0].Weight, insts[1].Weight = 1, 3
	env.Register(insts[0])
	env.Register(insts[1])
	lbtest.WaitServing(t, client, bs[:2]...)
	wait.For(t, 10*time.Second, "weights 1:3 to apply", func() bool {
		c := lbtest.Counts(context.Background(), client, 400, 1)
		return c["b1"] > 2*c["b0"]
	})
	counts := mustCount(t, client, 2000)
	if counts["b2"] != 0 || math.Abs(share(counts, bs[1])-0.75) > 0.02 {
		t.Fatalf("2000 calls over weights 1:3 in zone a = %v, want 500 and 1500 ± 2%%, none to zone b", counts)
	}

	conns := []int64{bs[0].Conns.Load(), bs[1].Conns.Load()}
	insts[0].Weight, insts[1].Weight = 3, 1
	env.Register(insts[0])
	env.Register(insts[1])
	wait.For(t, 10*time.Second, "weights 3:1 to apply", func() bool {
		c := lbtest.Counts(context.Background(), client, 400, 1)
		return c["b0"] > 2*c["b1"]
	})
	counts = mustCount(t, client, 2000)
	if counts["b2"] != 0 || math.Abs(share(counts, bs[0])-0.75) > 0.02 {
		t.Fatalf("2000 calls over weights 3:1 in zone a = %v, want 1500 and 500 ± 2%%, none to zone b", counts)
	}
	for i, b := range bs[:2] {
		if c := b.Conns.Load(); c != conns[i] {
			t.Errorf("%s accepted %d connections after the weight change, want %d", b.Name, c, conns[i])
		}
	}
}

// TestNoLocalZone: with no local zone, calls spread over all zones by
// healthy capacity.
func TestNoLocalZone(t *testing.T) {
	t.Setenv(zone.EnvZone, "")
	bs, _, _, client := start(t, `{}`, "a", "b", "b")
	lbtest.WaitServing(t, client, bs...)
	counts := mustCount(t, client, 1500)
	if s := share(counts, bs[0]); math.Abs(s-1.0/3) > 0.07 {
		t.Errorf("zone a (1 of 3 endpoints) got %.3f of calls, want 1/3: %v", s, counts)
	}
}

var parseSeeds = []string{``, `null`, `{}`, `{"localZone":"a"}`, `{"minLocalShare":0}`, `{"minLocalShare":1}`,
	`{"minLocalShare":1.5}`, `{"failoverOrder":["b","c"]}`, `{"failoverOrder":["b","b"]}`, `{"failoverOrder":[""]}`,
	`{"failoverOrder":"b"}`, `{"child":[{"wayfinder_weighted_round_robin":{"defaultWeight":2}}]}`, `{"child":[{"nope":{}}]}`,
	`{"child":[{"wayfinder_weighted_round_robin":{"defaultWeight":-1}}]}`, `{"zone":"a"}`, `[]`, `{"localZone":5}`}

func TestParseConfig(t *testing.T) {
	t.Setenv(zone.EnvZone, "")
	for _, tc := range []struct{ in, field, reason string }{
		{in: `{"minLocalShare":0}`, field: "minLocalShare", reason: "(0, 1]"},
		{in: `{"minLocalShare":-0.5}`, field: "minLocalShare"},
		{in: `{"minLocalShare":1.01}`, field: "minLocalShare"},
		{in: `{"minLocalShare":"0.5"}`, field: "minLocalShare"},
		{in: `{"failoverOrder":["b","b"]}`, field: "failoverOrder", reason: "twice"},
		{in: `{"failoverOrder":[""]}`, field: "failoverOrder", reason: "empty"},
		{in: `{"failoverOrder":"b"}`, field: "failoverOrder"},
		{in: `{"localZone":5}`, field: "localZone"},
		{in: `{"child":[{"nope":{}}]}`, field: "child", reason: "registered"},
		{in: `{"child":[{"wayfinder_weighted_round_robin":{"defaultWeight":-1}}]}`, field: "child", reason: "defaultWeight"},
		{in: `{"zone":"a"}`, field: "zone", reason: "accepted: child, failoverOrder, localZone, minLocalShare"},
	} {
		_, err := zone.ParseConfig([]byte(tc.in))
		var ce *wbalancer.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || ce.Policy != zone.Name || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("ParseConfig(%q) = %v, want a ConfigError for field %q mentioning %q", tc.in, err, tc.field, tc.reason)
		}
	}
	cfg, err := zone.ParseConfig(nil)
	if err != nil || cfg.LocalZone != "" || cfg.MinLocalShare != zone.DefaultMinLocalShare || cfg.Child.Name() != "round_robin" {
		t.Errorf("ParseConfig(nil) = %+v, %v, want the documented defaults", cfg, err)
	}
	t.Setenv(zone.EnvZone, "eu-1a")
	if cfg, err := zone.ParseConfig([]byte(`{}`)); err != nil || cfg.LocalZone != "eu-1a" {
		t.Errorf("ParseConfig({}) with %s=eu-1a = %+v, %v, want localZone eu-1a", zone.EnvZone, cfg, err)
	}
	if cfg, err := zone.ParseConfig([]byte(`{"localZone":"us-1b"}`)); err != nil || cfg.LocalZone != "us-1b" {
		t.Errorf("ParseConfig(localZone us-1b) with %s set = %+v, %v, want the config to win", zone.EnvZone, cfg, err)
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, js string) {
		cfg, err := zone.ParseConfig([]byte(js))
		if err != nil {
			if !strings.HasPrefix(err.Error(), zone.Name+": ") || !errors.Is(err, wbalancer.ErrInvalidConfig) {
				t.Fatalf("ParseConfig(%q) error %q does not name the policy or wrap ErrInvalidConfig", js, err)
			}
			return
		}
		if !(cfg.MinLocalShare > 0 && cfg.MinLocalShare <= 1) || cfg.Child.Builder == nil {
			t.Fatalf("ParseConfig(%q) accepted %+v", js, cfg)
		}
	})
}
