package custom_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	wbalancer "github.com/wayfinder-rpc/wayfinder/balancer"
	"github.com/wayfinder-rpc/wayfinder/balancer/custom"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/testing/lbtest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	//lint:ignore U1000 counts test_counting_builder's builds for a check of RegisterBuilder's rebuild contract that this file does not make yet.
	builds int
	_      = func() bool {
		custom.Register("test_prefer_zone_a", func(c custom.Call, ready []custom.Endpoint) (int, error) {
			for i, e := range ready {
				if e.Instance.Zone == "a" {
					return i, nil
				}
			}
			return 0, status.Error(codes.Unavailable, "no endpoint in zone a")
		})
		custom.Register("test_bad_picks", func(c custom.Call, ready []custom.Endpoint) (int, error) {
			switch md := c.Ctx.Value(modeKey{}); md {
			case "panic":
				panic("boom")
			case "range":
				return len(ready), nil
			}
			return 0, nil
		})
		custom.RegisterBuilder("test_counting_builder", func(ready []custom.Endpoint) custom.PickFunc {
			builds++
			return func(custom.Call, []custom.Endpoint) (int, error) { return 0, nil }
		})
		return true
	}()
)

type modeKey struct{}

// TestChoiceByAttributes: a user's function sees instances' zones and
// its choice is obeyed on every call, through real servers.
func TestChoiceByAttributes(t *testing.T) {
	env := lbtest.NewEnv(t)
	bs := lbtest.StartBackends(t, 3)
	for i, b := range bs {
		inst := lbtest.Instance(b)
		inst.Zone = "b"
		if i == 1 {
			inst.Zone = "a"
		}
		env.Register(inst)
	}
	_, client := env.Dial(`{"test_prefer_zone_a":{}}`)
	// Wait until b1 is ready: before, the function sees other endpoints
	// only and fails the calls.
	wait.For(t, 10*time.Second, "b1 to serve", func() bool {
		name, err := lbtest.Call(context.Background(), client)
		return err == nil && name == "b1"
	})
	counts := lbtest.Counts(context.Background(), client, 300, 4)
	if counts["b1"] != 300 {
		t.Errorf("300 calls preferring zone a = %v, want all on b1", counts)
	}
	env.Deregister(lbtest.Instance(bs[1]))
	wait.For(t, 10*time.Second, "calls to fail with the function's error", func() bool {
		_, err := lbtest.Call(context.Background(), client)
		return status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "zone a")
	})
}

// TestBadPicks: a panic or an index out of range fails the call with
// INTERNAL and does not crash the process.
func TestBadPicks(t *testing.T) {
	env := lbtest.NewEnv(t)
	bs := lbtest.StartBackends(t, 1)
	env.Register(lbtest.Instance(bs[0]))
	_, client := env.Dial(`{"test_bad_picks":{}}`)
	lbtest.WaitServing(t, client, bs...)
	for _, m := range []string{"panic", "range"} {
		_, err := lbtest.Call(context.WithValue(context.Background(), modeKey{}, m), client)
		if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "test_bad_picks") {
			t.Errorf("call with a %s in the pick function = %v, want INTERNAL naming the policy", m, err)
		}
	}
}

func TestRegisterRejects(t *testing.T) {
	for _, name := range []string{"", "Bad", "has-dash", "9lives", "test_prefer_zone_a", "round_robin"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", name)
				}
			}()
			custom.Register(name, func(custom.Call, []custom.Endpoint) (int, error) { return 0, nil })
		}()
	}
}

var parseSeeds = []string{``, `{}`, `null`, `{"x":1}`, `[]`, `1`}

func TestParseConfig(t *testing.T) {
	p := gbalancer.Get("test_prefer_zone_a").(gbalancer.ConfigParser)
	if _, err := p.ParseConfig([]byte(`{}`)); err != nil {
		t.Errorf("ParseConfig({}) = %v", err)
	}
	_, err := p.ParseConfig([]byte(`{"zone":"a"}`))
	var ce *wbalancer.ConfigError
	if !errors.As(err, &ce) || ce.Field != "zone" || ce.Policy != "test_prefer_zone_a" {
		t.Errorf(`ParseConfig({"zone":"a"}) = %v, want a ConfigError for field "zone"`, err)
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add(s)
	}
	p := gbalancer.Get("test_prefer_zone_a").(gbalancer.ConfigParser)
	f.Fuzz(func(t *testing.T, js string) {
		if _, err := p.ParseConfig([]byte(js)); err != nil && !errors.Is(err, wbalancer.ErrInvalidConfig) {
			t.Fatalf("ParseConfig(%q) = %v, want nil or ErrInvalidConfig", js, err)
		}
	})
}
