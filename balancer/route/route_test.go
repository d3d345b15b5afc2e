package route_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	wbalancer "github.com/wayfinder-rpc/wayfinder/balancer"
	"github.com/wayfinder-rpc/wayfinder/balancer/route"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/lbtest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T) ([]*lbtest.Backend, *lbtest.Env) {
	env := lbtest.NewEnv(t)
	bs := lbtest.StartBackends(t, 4)
	for i, b := range bs {
		inst := lbtest.Instance(b)
		inst.Version = "v1"
		if i >= 2 {
			inst.Version = "v2"
		}
		if i == 2 {
			inst.Tags = []string{"canary"}
		}
		env.Register(inst)
	}
	return bs, env
}

func only(t *testing.T, ctx context.Context, c hellopb.HelloServiceClient, n int, want ...string) {
	t.Helper()
	counts := lbtest.Counts(ctx, c, n, 2)
	total := 0
	for _, w := range want {
		total += counts[w]
	}
	if total != n {
		t.Errorf("%d calls went to %v, want only %v", n, counts, want)
	}
}

// TestSubsets: the target's subset, a per-call subset, the fallback when
// a subset is empty or not ready, and strict mode's clear failure.
func TestSubsets(t *testing.T) {
	bs, env := start(t)
	_, client := env.Dial(`{"wayfinder_route":{"subset":"version=v2"}}`)
	all := context.Background()
	lbtest.WaitServing(t, client, bs[2], bs[3])

	only(t, all, client, 100, "b2", "b3")
	only(t, route.WithSubset(all, "tag=canary"), client, 50, "b2")
	only(t, route.WithSubset(all, "version=v1"), client, 50, "b0", "b1")

	// Empty subset: fallback to everything, or a clear failure.
	counts := lbtest.Counts(route.WithSubset(all, "version=v9"), client, 100, 2)
	if lbtest.Errors(counts) > 0 || len(counts) < 3 {
		t.Errorf("calls to an empty subset = %v, want them spread over all backends", counts)
	}
	_, err := lbtest.Call(route.WithStrictSubset(all, "version=v9"), client)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "version=v9") {
		t.Errorf("strict call to an empty subset = %v, want UNAVAILABLE naming the selector", err)
	}
	_, err = lbtest.Call(route.WithSubset(all, "colour=red"), client)
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "colour") {
		t.Errorf("call with a bad selector = %v, want INTERNAL naming the key", err)
	}

	// The canary stops: its subset is not ready, so calls fall back.
	bs[2].Stop()
	ctx := route.WithSubset(all, "tag=canary")
	wait.For(t, 10*time.Second, "canary calls to fall back", func() bool {
		name, err := lbtest.Call(ctx, client)
		return err == nil && name != "b2"
	})
	if _, err := lbtest.Call(route.WithStrictSubset(all, "tag=canary"), client); status.Code(err) != codes.Unavailable {
		t.Errorf("strict call to a subset that is down = %v, want UNAVAILABLE", err)
	}
}

var parseSeeds = []string{``, `{}`, `{"subset":"version=v2"}`, `{"subset":"tag=canary,zone=a","strict":true}`,
	`{"subset":"colour=red"}`, `{"subset":"version="}`, `{"subset":"meta.="}`, `{"strict":"yes"}`, `{"subsets":1}`}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct{ in, field string }{
		{`{"subset":"colour=red"}`, "subset"},
		{`{"subset":"version"}`, "subset"},
		{`{"subset":"version="}`, "subset"},
		{`{"strict":"yes"}`, "strict"},
		{`{"subsets":"version=v1"}`, "subsets"},
	} {
		_, err := route.ParseConfig([]byte(tc.in))
		var ce *wbalancer.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || ce.Policy != route.Name {
			t.Errorf("ParseConfig(%q) = %v, want a ConfigError for field %q", tc.in, err, tc.field)
		}
	}
	if cfg, err := route.ParseConfig([]byte(`{"subset":"tag=canary, meta.team=blue","strict":true}`)); err != nil || !cfg.Strict {
		t.Errorf("ParseConfig(valid) = %+v, %v", cfg, err)
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, js string) {
		cfg, err := route.ParseConfig([]byte(js))
		if err != nil {
			if !strings.HasPrefix(err.Error(), route.Name+": ") || !errors.Is(err, wbalancer.ErrInvalidConfig) {
				t.Fatalf("ParseConfig(%q) error %q does not name the policy or wrap ErrInvalidConfig", js, err)
			}
			return
		}
		if _, err := route.ParseSelector(cfg.Subset); err != nil {
			t.Fatalf("ParseConfig(%q) accepted bad subset: %v", js, err)
		}
	})
}
