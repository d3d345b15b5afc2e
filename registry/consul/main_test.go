package consul_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
)

// shared is one dev agent for the tests that do not stop or reconfigure
// their agent; each uses its own service names.
var shared *testenv.ConsulAgent

func TestMain(m *testing.M) {
	code := func() int {
		mt := &testenv.MainTB{}
		defer mt.Close()
		shared = testenv.StartConsul(mt)
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// newReg returns a Registry on the agent at addr, closed at the end of t.
func newReg(t testing.TB, addr string, opts ...consul.Option) *consul.Registry {
	t.Helper()
	r, err := consul.New(addr, opts...)
	if err != nil {
		t.Fatalf("consul.New(%q) = %v", addr, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func ids(in []registry.Instance) []string {
	out := make([]string, len(in))
	for i, x := range in {
		out[i] = x.ID
	}
	return out
}

func sameIDs(got []registry.Instance, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].ID != want[i] {
			return false
		}
	}
	return true
}

// nextUntil calls w.Next until cond holds, failing t after d.
func nextUntil(t testing.TB, w registry.Watcher, d time.Duration, what string, cond func([]registry.Instance) bool) []registry.Instance {
	t.Helper()
	ctx := ctxT(t, d)
	var last []registry.Instance
	var lastErr error
	for {
		got, err := w.Next(ctx)
		if err == nil {
			if cond(got) {
				return got
			}
			last = got
			continue
		}
		if ctx.Err() != nil {
			t.Fatalf("Next() never showed %s within %v; last set = %v, last error = %v", what, d, ids(last), lastErr)
		}
		lastErr = err
	}
}

// lookupUntil polls Lookup until cond holds, failing t after d.
func lookupUntil(t testing.TB, r registry.Discovery, svc string, d time.Duration, what string, cond func([]registry.Instance) bool) []registry.Instance {
	t.Helper()
	var got []registry.Instance
	var err error
	if !wait.Until(d, func() bool {
		got, err = r.Lookup(ctxT(t, 5*time.Second), svc)
		return err == nil && cond(got)
	}) {
		t.Fatalf("Lookup(%q) never showed %s within %v; last = %v, %v", svc, what, d, ids(got), err)
	}
	return got
}
