package outlier_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	wbalancer "github.com/wayfinder-rpc/wayfinder/balancer"
	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	"github.com/wayfinder-rpc/wayfinder/balancer/outlier"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/lbtest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, n int, cfg string) ([]*lbtest.Backend, hellopb.HelloServiceClient) {
	t.Helper()
	env := lbtest.NewEnv(t)
	bs := lbtest.StartBackends(t, n)
	for _, b := range bs {
		env.Register(lbtest.Instance(b))
	}
	_, client := env.Dial(`{"wayfinder_outlier_ejection":` + cfg + `}`)
	lbtest.WaitServing(t, client, bs...)
	return bs, client
}

// ejected reports whether a live outlier balancer has ejected addr.
func ejected(addr string) bool {
	for _, b := range inspect.Balancers() {
		if b.Policy != "outlier" {
			continue
		}
		for _, e := range b.Endpoints {
			if e.Addr == addr && e.Ejected {
				return true
			}
		}
	}
	return false
}

// served makes n calls and returns how many each backend served.
func served(client hellopb.HelloServiceClient, bs []*lbtest.Backend, n int) []int64 {
	before := make([]int64, len(bs))
	for i, b := range bs {
		before[i] = b.Calls.Load()
	}
	lbtest.Counts(context.Background(), client, n, 4)
	out := make([]int64, len(bs))
	for i, b := range bs {
		out[i] = b.Calls.Load() - before[i]
	}
	return out
}

// TestEjectAndReturn: a backend answering UNAVAILABLE is ejected after 3
// failures in a row, gets no call while ejected, and returns after the
// ejection time without reconnecting; under each child policy.
func TestEjectAndReturn(t *testing.T) {
	for _, child := range []string{
		`[{"round_robin":{}}]`,
		// No error penalty: P2C must not avoid the failing backend by
		// itself, or a batch without calls to it would not prove the
		// ejection.
		`[{"wayfinder_p2c_ewma":{"decay":"50ms","errorPenalty":"0s"}}]`,
		`[{"wayfinder_weighted_round_robin":{}}]`,
	} {
		t.Run(child, func(t *testing.T) {
			const ejection = 2 * time.Second
			bs, client := start(t, 4, fmt.Sprintf(`{"child":%s,"consecutiveFailures":3,"baseEjectionTime":"%v","maxEjectionPercent":25}`, child, ejection))
			bad := bs[3]
			conns := bad.Conns.Load()
			bad.SetFailing(true)

			// The ejection happened after the last look that found the
			// backend in and before the first that found it out. (A batch
			// of calls without the bad backend proves nothing under P2C,
			// which may avoid it for a while on its own.)
			var ejectedBy, ejectedAfter time.Time
			wait.For(t, 20*time.Second, "the failing backend to be ejected", func() bool {
				served(client, bs, 20)
				now := time.Now()
				if ejected(bad.Addr) {
					ejectedBy = now
					return true
				}
				ejectedAfter = now
				return false
			})
			var got int64
			for time.Since(ejectedBy) < ejection/2 {
				got += served(client, bs, 20)[3]
			}
			if got != 0 {
				t.Fatalf("ejected backend served %d calls within %v of its ejection, want 0", got, ejection/2)
			}

			bad.SetFailing(false)
			wait.For(t, 20*time.Second, "the backend to return", func() bool {
				return served(client, bs, 40)[3] > 0
			})
			if d := time.Since(ejectedAfter); d < ejection {
				t.Errorf("backend returned %v after its ejection, want >= %v", d, ejection)
			}
			if c := bad.Conns.Load(); c != conns {
				t.Errorf("backend accepted %d connections across ejection, want %d: ejection must not reconnect", c, conns)
			}
		})
	}
}

// TestMaxEjectionPercent: with 3 of 5 backends failing and at most 40%
// ejected, exactly 2 are ejected and the third keeps its share.
func TestMaxEjectionPercent(t *testing.T) {
	bs, client := start(t, 5, `{"consecutiveFailures":2,"baseEjectionTime":"1h","maxEjectionPercent":40}`)
	for _, b := range bs[2:] {
		b.SetFailing(true)
	}
	var got []int64
	wait.For(t, 20*time.Second, "two failing backends to be ejected", func() bool {
		got = served(client, bs, 60)
		zero := 0
		for _, n := range got[2:] {
			if n == 0 {
				zero++
			}
		}
		return zero == 2
	})
	for range 3 {
		got = served(client, bs, 60)
		active, zero := 0, 0
		for _, n := range got[2:] {
			switch {
			case n == 0:
				zero++
			case n >= 10:
				active++
			}
		}
		if zero != 2 || active != 1 {
			t.Fatalf("calls per backend (b2..b4 failing) = %v, want 2 of the failing ones ejected and the third served about 1/3", got)
		}
	}
}

// TestFailureRate: with consecutive-failure detection off, a backend
// whose failure rate over an interval passes the threshold is ejected.
func TestFailureRate(t *testing.T) {
	bs, client := start(t, 3, `{"consecutiveFailures":0,"failureRateThreshold":0.5,"minimumRequests":5,"interval":"100ms","baseEjectionTime":"1h","maxEjectionPercent":50}`)
	bs[0].SetFailing(true)
	wait.For(t, 20*time.Second, "the failing backend to be ejected", func() bool {
		return served(client, bs, 30)[0] == 0
	})
	if got := served(client, bs, 60); got[0] != 0 || got[1] == 0 || got[2] == 0 {
		t.Fatalf("calls per backend after ejecting b0 = %v, want 0 to b0", got)
	}
}

var parseSeeds = []string{``, `null`, `{}`, `{"consecutiveFailures":3}`, `{"consecutiveFailures":-1}`,
	`{"consecutiveFailures":0}`, `{"consecutiveFailures":0,"failureRateThreshold":0.5}`, `{"failureRateThreshold":1.5}`,
	`{"interval":"0s"}`, `{"baseEjectionTime":"10m"}`, `{"baseEjectionTime":"10s","maxEjectionTime":"1s"}`,
	`{"maxEjectionPercent":101}`, `{"maxEjectionPercent":0}`, `{"child":[{"wayfinder_p2c_ewma":{"decay":"1s"}}]}`,
	`{"child":[{"nope":{}},{"round_robin":{}}]}`, `{"child":[{"nope":{}}]}`, `{"child":[]}`, `{"child":{}}`,
	`{"child":[{"wayfinder_p2c_ewma":{"decay":"-1s"}}]}`, `{"minimumRequests":0}`, `{"x":1}`, `[]`}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct{ in, field, reason string }{
		{in: `{"consecutiveFailures":-1}`, field: "consecutiveFailures"},
		{in: `{"consecutiveFailures":0}`, field: "consecutiveFailures", reason: "disable every detection"},
		{in: `{"failureRateThreshold":1.5}`, field: "failureRateThreshold"},
		{in: `{"failureRateThreshold":-0.1}`, field: "failureRateThreshold"},
		{in: `{"minimumRequests":0}`, field: "minimumRequests"},
		{in: `{"interval":"0s"}`, field: "interval"},
		{in: `{"interval":5}`, field: "interval"},
		{in: `{"baseEjectionTime":"2h"}`, field: "baseEjectionTime"},
		{in: `{"baseEjectionTime":"10s","maxEjectionTime":"1s"}`, field: "maxEjectionTime"},
		{in: `{"maxEjectionPercent":101}`, field: "maxEjectionPercent"},
		{in: `{"maxEjectionPercent":-1}`, field: "maxEjectionPercent"},
		{in: `{"child":[{"nope":{}}]}`, field: "child", reason: "registered"},
		{in: `{"child":[]}`, field: "child"},
		{in: `{"child":{"round_robin":{}}}`, field: "child"},
		{in: `{"child":[{"wayfinder_p2c_ewma":{"decay":"-1s"}}]}`, field: "child", reason: `field "decay"`},
		{in: `{"ejectionTime":"1s"}`, field: "ejectionTime", reason: "accepted: baseEjectionTime"},
	} {
		_, err := outlier.ParseConfig([]byte(tc.in))
		var ce *wbalancer.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || ce.Policy != outlier.Name || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("ParseConfig(%q) = %v, want a ConfigError for field %q mentioning %q", tc.in, err, tc.field, tc.reason)
		}
	}
	cfg, err := outlier.ParseConfig(nil)
	if err != nil || cfg.Child.Name() != "round_robin" || cfg.ConsecutiveFailures != 5 || time.Duration(cfg.BaseEjectionTime) != 30*time.Second ||
		time.Duration(cfg.MaxEjectionTime) != 5*time.Minute || *cfg.MaxEjectionPercent != 10 || cfg.FailureRateThreshold != 0 {
		t.Errorf("ParseConfig(nil) = %+v, %v, want the documented defaults", cfg, err)
	}
	cfg, err = outlier.ParseConfig([]byte(`{"baseEjectionTime":"10m","child":[{"nope":{}},{"wayfinder_p2c_ewma":{}}]}`))
	if err != nil || time.Duration(cfg.MaxEjectionTime) != 10*time.Minute || cfg.Child.Name() != "wayfinder_p2c_ewma" {
		t.Errorf("ParseConfig(base 10m, child nope then p2c) = %+v, %v, want maxEjectionTime 10m and child p2c", cfg, err)
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, js string) {
		cfg, err := outlier.ParseConfig([]byte(js))
		if err != nil {
			if !strings.HasPrefix(err.Error(), outlier.Name+": ") || !errors.Is(err, wbalancer.ErrInvalidConfig) {
				t.Fatalf("ParseConfig(%q) error %q does not name the policy or wrap ErrInvalidConfig", js, err)
			}
			return
		}
		if cfg.Child.Builder == nil || cfg.ConsecutiveFailures < 0 || cfg.MinimumRequests < 1 || cfg.MaxEjectionTime < cfg.BaseEjectionTime ||
			cfg.BaseEjectionTime <= 0 || cfg.Interval <= 0 || *cfg.MaxEjectionPercent < 0 || *cfg.MaxEjectionPercent > 100 {
			t.Fatalf("ParseConfig(%q) accepted %+v", js, cfg)
		}
	})
}
