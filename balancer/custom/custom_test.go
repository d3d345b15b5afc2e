package custom_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	wbalancer "github.com/wayfinder-rpc/wayfinder/balancer"
	"github.com/wayfinder-rpc/wayfinder/balancer/custom"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/lbtest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func init() {
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
	custom.RegisterBuilder("test_chosen_at_build", buildChosen)
}

type modeKey struct{}

// A build of test_chosen_at_build: what it was given, for the test to see.
type build struct {
	n     int64    // 1 for the first build, 2 for the second...
	ready []string // the ready endpoints' instance IDs, in their order
}

var (
	builds    atomic.Int64
	lastBuild atomic.Pointer[build]
)

// buildChosen is test_chosen_at_build's BuildFunc: it finds, once per
// build, the endpoint whose instance has metadata chosen=yes, and its
// PickFunc returns that index without looking at the instances again,
// so that calls follow a change of attributes only if the change made a
// new build. The PickFunc also fails a call whose ready set is not the
// one it was built for.
func buildChosen(ready []custom.Endpoint) custom.PickFunc {
	b := &build{n: builds.Add(1)}
	chosen := -1
	for i, e := range ready {
		b.ready = append(b.ready, e.Instance.ID)
		if e.Instance.Metadata["chosen"] == "yes" {
			chosen = i
		}
	}
	lastBuild.Store(b)
	return func(_ custom.Call, got []custom.Endpoint) (int, error) {
		if len(got) != len(b.ready) {
			return 0, status.Errorf(codes.Internal, "PickFunc of build %d (%v) called with %d endpoints", b.n, b.ready, len(got))
		}
		if chosen < 0 {
			return 0, status.Errorf(codes.Unavailable, "no endpoint chosen in build %d (%v)", b.n, b.ready)
		}
		return chosen, nil
	}
}

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

// TestBuildOnEveryChange checks RegisterBuilder's contract (BuildFunc):
// the BuildFunc runs whenever the ready endpoints or their attributes
// change, the PickFunc it returns serves every call until the next
// change, and it does not run on the pick path.
func TestBuildOnEveryChange(t *testing.T) {
	env := lbtest.NewEnv(t)
	bs := lbtest.StartBackends(t, 3)
	inst := func(i int, chosen bool) registry.Instance {
		in := lbtest.Instance(bs[i])
		if chosen {
			in.Metadata = map[string]string{"chosen": "yes"}
		}
		return in
	}
	lastReady := func() []string {
		if b := lastBuild.Load(); b != nil {
			return b.ready
		}
		return nil
	}
	env.Register(inst(0, true))
	env.Register(inst(1, false))
	_, c := env.Dial(`{"test_chosen_at_build":{}}`)
	wait.For(t, 10*time.Second, "a build with b0 and b1 ready", func() bool {
		lbtest.Call(context.Background(), c) // connect
		return slices.Equal(sorted(lastReady()), []string{"b0", "b1"})
	})
	before := builds.Load()
	if counts := lbtest.Counts(context.Background(), c, 200, 4); counts["b0"] != 200 {
		t.Fatalf("200 calls with b0 chosen = %v, want all on b0", counts)
	}
	if n := builds.Load() - before; n != 0 {
		t.Errorf("200 calls with no change ran the BuildFunc %d times, want 0 (off the pick path)", n)
	}

	// An attribute change only: the same endpoints, b1 chosen instead.
	env.Register(inst(0, false))
	env.Register(inst(1, true))
	wait.For(t, 10*time.Second, "calls to follow the choice to b1", func() bool {
		name, err := lbtest.Call(context.Background(), c)
		return err == nil && name == "b1"
	})
	if counts := lbtest.Counts(context.Background(), c, 200, 4); counts["b1"] != 200 {
		t.Fatalf("200 calls with b1 chosen = %v, want all on b1 (last build %v)", counts, lastReady())
	}

	// A change of the set: b2 joins, then the chosen b1 leaves.
	env.Register(inst(2, false))
	wait.For(t, 10*time.Second, "a build with b0, b1 and b2 ready", func() bool {
		lbtest.Call(context.Background(), c) // connect
		return slices.Equal(sorted(lastReady()), []string{"b0", "b1", "b2"})
	})
	if counts := lbtest.Counts(context.Background(), c, 200, 4); counts["b1"] != 200 {
		t.Fatalf("200 calls with b1 chosen among three = %v, want all on b1 (last build %v)", counts, lastReady())
	}
	env.Deregister(inst(1, true))
	wait.For(t, 10*time.Second, "calls to fail with no endpoint chosen", func() bool {
		_, err := lbtest.Call(context.Background(), c)
		return status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "no endpoint chosen")
	})
	if got := sorted(lastReady()); !slices.Equal(got, []string{"b0", "b2"}) {
		t.Errorf("last build's ready endpoints = %v, want [b0 b2]", got)
	}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

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
