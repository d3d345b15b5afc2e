package wrr_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	gbalancer "google.golang.org/grpc/balancer"
	gresolver "google.golang.org/grpc/resolver"

	wbalancer "github.com/wayfinder-rpc/wayfinder/balancer"
	"github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/fakecc"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/lbtest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const lbConfig = `{"wayfinder_weighted_round_robin":{}}`

// checkShares fails unless counts over names are in proportion to weights
// within tol (relative).
func checkShares(t *testing.T, counts map[string]int, names []string, weights []int, tol float64) {
	t.Helper()
	total, wsum := 0, 0
	for i, n := range names {
		total += counts[n]
		wsum += weights[i]
	}
	for i, n := range names {
		want := float64(total) * float64(weights[i]) / float64(wsum)
		if d := math.Abs(float64(counts[n]) - want); d > tol*want {
			t.Errorf("%s got %d of %d calls, want %.0f ± %.0f%% (all: %v)", n, counts[n], total, want, tol*100, counts)
		}
	}
}

// TestSharesAndLiveWeightChange checks 1:2:3 shares within 2% over 6000
// calls through real servers, then changes the weights in the registry
// and checks that the shares follow with no new connection.
func TestSharesAndLiveWeightChange(t *testing.T) {
	env := lbtest.NewEnv(t)
	bs := lbtest.StartBackends(t, 3)
	insts := make([]registry.Instance, 3)
	for i, b := range bs {
		insts[i] = lbtest.Instance(b)
		insts[i].Weight = i + 1
		env.Register(insts[i])
	}
	_, client := env.Dial(lbConfig)
	lbtest.WaitServing(t, client, bs...)
	names := []string{"b0", "b1", "b2"}

	counts := lbtest.Counts(context.Background(), client, 6000, 4)
	if n := lbtest.Errors(counts); n > 0 {
		t.Fatalf("%d calls failed: %v", n, counts)
	}
	checkShares(t, counts, names, []int{1, 2, 3}, 0.02)

	conns := make([]int64, 3)
	for i, b := range bs {
		conns[i] = b.Conns.Load()
	}
	// 3:2:1 now: the heaviest becomes the lightest.
	for i := range insts {
		insts[i].Weight = 3 - i
		env.Register(insts[i])
	}
	wait.For(t, 10*time.Second, "shares to follow the new weights", func() bool {
		c := lbtest.Counts(context.Background(), client, 600, 1)
		return c["b0"] > c["b2"]
	})
	counts = lbtest.Counts(context.Background(), client, 6000, 4)
	checkShares(t, counts, names, []int{3, 2, 1}, 0.02)
	for i, b := range bs {
		if got := b.Conns.Load(); got != conns[i] {
			t.Errorf("%s accepted %d connections after the weight change, want %d: a weight change must not reconnect", b.Name, got, conns[i])
		}
	}
}

func endpoints(weights ...int) []gresolver.Endpoint {
	insts := make([]registry.Instance, len(weights))
	for i, w := range weights {
		insts[i] = registry.Instance{ID: fmt.Sprint(i), Service: "s", Address: fmt.Sprintf("10.0.0.%d:80", i+1), Weight: w}
	}
	return instance.Endpoints(insts)
}

func pickCounts(t *testing.T, p gbalancer.Picker, n int, sc map[gbalancer.SubConn]string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		r, err := p.Pick(gbalancer.PickInfo{Ctx: context.Background()})
		if err != nil {
			t.Fatalf("Pick() = %v", err)
		}
		out[sc[r.SubConn]]++
	}
	return out
}

func subConnNames(h *fakecc.Harness) map[gbalancer.SubConn]string {
	m := map[gbalancer.SubConn]string{}
	for _, sc := range h.CC.SubConns() {
		m[sc] = sc.Addr
	}
	return m
}

// TestZeroWeightRule checks that weight 0 means defaultWeight.
func TestZeroWeightRule(t *testing.T) {
	h, err := fakecc.Build(wrr.Name, `{"defaultWeight": 3}`)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.Update(endpoints(0, 1)); err != nil {
		t.Fatal(err)
	}
	p, _ := h.CC.Picker()
	if _, err := p.Pick(gbalancer.PickInfo{Ctx: context.Background()}); !errors.Is(err, gbalancer.ErrNoSubConnAvailable) {
		t.Fatalf("Pick() before any endpoint is ready = %v, want ErrNoSubConnAvailable", err)
	}
	h.ReadyAll()
	p, _ = h.CC.Picker()
	got := pickCounts(t, p, 4000, subConnNames(h))
	if got["10.0.0.1:80"] != 3000 || got["10.0.0.2:80"] != 1000 {
		t.Fatalf("4000 picks over weights {0 (default 3), 1} = %v, want 3000 and 1000", got)
	}
}

// TestFailedEndpointSkipped checks that only ready endpoints are picked.
func TestFailedEndpointSkipped(t *testing.T) {
	h, err := fakecc.Build(wrr.Name, "")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.Update(endpoints(1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	h.ReadyAll()
	h.Fail("10.0.0.3:80")
	p, _ := h.CC.Picker()
	got := pickCounts(t, p, 300, subConnNames(h))
	if got["10.0.0.3:80"] != 0 || got["10.0.0.1:80"] != 100 || got["10.0.0.2:80"] != 200 {
		t.Fatalf("300 picks with the weight-3 endpoint failed = %v, want 100 and 200 on the others", got)
	}
}

var parseSeeds = []string{``, `null`, `{}`, `{"defaultWeight": 5}`, `{"defaultWeight": -1}`, `{"defaultWeight": 0}`,
	`{"defaultWeight": 1e9}`, `{"defaultweight": 2}`, `{"foo": 1}`, `[]`, `{"defaultWeight": "2"}`, `{} {}`, `{`,
	`{"loadReports": {}}`, `{"loadReports": {"blackoutPeriod": "0s", "metric": "pool"}}`, `{"loadReports": 1}`}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		in, field string
		want      int
	}{
		{in: ``, want: 1},
		{in: `{}`, want: 1},
		{in: `{"defaultWeight": 7}`, want: 7},
		{in: `{"defaultWeight": -1}`, field: "defaultWeight"},
		{in: `{"defaultWeight": 0}`, field: "defaultWeight"},
		{in: `{"defaultWeight": 2000000}`, field: "defaultWeight"},
		{in: `{"defaultWeight": "2"}`, field: "defaultWeight"},
		{in: `{"weights": 1}`, field: "weights"},
		{in: `[1]`},
		{in: `{"loadReports": {}}`, want: 1},
		{in: `{"loadReports": {"blackoutPeriod": "-1s"}}`, field: "loadReports.blackoutPeriod"},
		{in: `{"loadReports": {"weightExpirationPeriod": "10ms"}}`, field: "loadReports.weightExpirationPeriod"},
		{in: `{"loadReports": {"weightUpdatePeriod": "1ms"}}`, field: "loadReports.weightUpdatePeriod"},
		{in: `{"loadReports": {"errorUtilizationPenalty": -1}}`, field: "loadReports.errorUtilizationPenalty"},
		{in: `{"loadReports": {"blackout": "1s"}}`, field: "loadReports"},
	} {
		cfg, err := wrr.ParseConfig([]byte(tc.in))
		if tc.want != 0 {
			if err != nil || cfg.DefaultWeight != tc.want {
				t.Errorf("ParseConfig(%q) = %+v, %v, want defaultWeight %d", tc.in, cfg, err, tc.want)
			}
			continue
		}
		var ce *wbalancer.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || ce.Policy != wrr.Name || !errors.Is(err, wbalancer.ErrInvalidConfig) {
			t.Errorf("ParseConfig(%q) = %v, want a ConfigError for field %q", tc.in, err, tc.field)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, js string) {
		cfg, err := wrr.ParseConfig([]byte(js))
		if err != nil {
			if !strings.HasPrefix(err.Error(), wrr.Name+": ") || !errors.Is(err, wbalancer.ErrInvalidConfig) {
				t.Fatalf("ParseConfig(%q) error %q does not name the policy or wrap ErrInvalidConfig", js, err)
			}
			return
		}
		if cfg.DefaultWeight < 1 || cfg.DefaultWeight > registry.MaxWeight {
			t.Fatalf("ParseConfig(%q) accepted defaultWeight %d", js, cfg.DefaultWeight)
		}
	})
}
