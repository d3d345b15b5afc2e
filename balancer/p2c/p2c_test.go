package p2c_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	gbalancer "google.golang.org/grpc/balancer"

	wbalancer "github.com/wayfinder-rpc/wayfinder/balancer"
	"github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/fakecc"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/lbtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const lbConfig = `{"wayfinder_p2c_ewma":{}}`

func start(t *testing.T, n int) ([]*lbtest.Backend, *lbtest.Env) {
	env := lbtest.NewEnv(t)
	bs := lbtest.StartBackends(t, n)
	for _, b := range bs {
		env.Register(lbtest.Instance(b))
	}
	return bs, env
}

// TestSlowBackendAvoided: one of 5 backends is 200ms slower; after
// warm-up it gets under 5% of calls.
func TestSlowBackendAvoided(t *testing.T) {
	bs, env := start(t, 5)
	_, client := env.Dial(lbConfig)
	lbtest.WaitServing(t, client, bs...)
	bs[4].SetDelay(200 * time.Millisecond)
	lbtest.Counts(context.Background(), client, 200, 8) // warm-up

	counts := lbtest.Counts(context.Background(), client, 2000, 8)
	if n := lbtest.Errors(counts); n > 0 {
		t.Fatalf("%d calls failed: %v", n, counts)
	}
	if got := counts["b4"]; got >= 100 {
		t.Errorf("slow backend got %d of 2000 calls, want < 100 (5%%): %v", got, counts)
	}
}

// TestFailingBackendAvoided: one of 5 backends answers UNAVAILABLE at
// once; after warm-up it gets under 5% of calls. The penalty is 10s: with
// the default 250ms, a loaded machine (healthy calls of 100ms, two in
// flight) makes the failing backend look no worse than the others, as
// designed, and the test would measure the machine.
func TestFailingBackendAvoided(t *testing.T) {
	bs, env := start(t, 5)
	_, client := env.Dial(`{"wayfinder_p2c_ewma":{"errorPenalty":"10s"}}`)
	lbtest.WaitServing(t, client, bs...)
	bs[4].SetFailing(true)
	lbtest.Counts(context.Background(), client, 200, 8) // warm-up

	before := bs[4].Calls.Load()
	counts := lbtest.Counts(context.Background(), client, 2000, 8)
	if got := bs[4].Calls.Load() - before; got >= 100 {
		t.Errorf("failing backend got %d of 2000 calls, want < 100 (5%%): %v", got, counts)
	}
}

func TestNoReadyEndpoint(t *testing.T) {
	h, err := fakecc.Build(p2c.Name, "")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.Update(instance.Endpoints(nil)); err == nil {
		t.Errorf("Update(no endpoints) = nil, want an error")
	}
	p, _ := h.CC.Picker()
	if _, err := p.Pick(gbalancer.PickInfo{Ctx: context.Background()}); err == nil {
		t.Errorf("Pick() with no endpoints = nil error")
	}
}

var parseSeeds = []string{``, `{}`, `{"decay":"5s"}`, `{"decay":"0s"}`, `{"decay":"-1s"}`, `{"decay":5}`,
	`{"errorPenalty":"0s"}`, `{"errorPenalty":"-1ms"}`, `{"errorPenalty":"2m"}`, `{"decay":"2h"}`, `{"x":1}`, `"s"`}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct{ in, field string }{
		{in: `{"decay":"0s"}`, field: "decay"},
		{in: `{"decay":"-1s"}`, field: "decay"},
		{in: `{"decay":5}`, field: "decay"},
		{in: `{"decay":"fast"}`, field: "decay"},
		{in: `{"errorPenalty":"-1ms"}`, field: "errorPenalty"},
		{in: `{"errorPenalty":"2m"}`, field: "errorPenalty"},
		{in: `{"choices":3}`, field: "choices"},
		{in: `{"loadReports":{"weightUpdatePeriod":"1ms"}}`, field: "loadReports.weightUpdatePeriod"},
		{in: `{"loadReports":{"metrics":"pool"}}`, field: "loadReports"},
	} {
		_, err := p2c.ParseConfig([]byte(tc.in))
		var ce *wbalancer.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || ce.Policy != p2c.Name {
			t.Errorf("ParseConfig(%q) = %v, want a ConfigError for field %q", tc.in, err, tc.field)
		}
	}
	cfg, err := p2c.ParseConfig([]byte(`{"errorPenalty":"0s"}`))
	if err != nil || time.Duration(cfg.Decay) != p2c.DefaultDecay || *cfg.ErrorPenalty != 0 {
		t.Errorf(`ParseConfig({"errorPenalty":"0s"}) = %+v, %v, want default decay and no penalty`, cfg, err)
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, js string) {
		cfg, err := p2c.ParseConfig([]byte(js))
		if err != nil {
			if !strings.HasPrefix(err.Error(), p2c.Name+": ") || !errors.Is(err, wbalancer.ErrInvalidConfig) {
				t.Fatalf("ParseConfig(%q) error %q does not name the policy or wrap ErrInvalidConfig", js, err)
			}
			return
		}
		if d := time.Duration(cfg.Decay); d < time.Millisecond || d > time.Hour || cfg.ErrorPenalty == nil || *cfg.ErrorPenalty < 0 {
			t.Fatalf("ParseConfig(%q) accepted %+v", js, cfg)
		}
	})
}
