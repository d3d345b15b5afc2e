package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/cctest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// countingRegistrar counts registration attempts on a real registry.
type countingRegistrar struct {
	*memory.Registry
	attempts atomic.Int32
}

func (c *countingRegistrar) Register(ctx context.Context, inst registry.Instance) error {
	c.attempts.Add(1)
	return c.Registry.Register(ctx, inst)
}

func TestNewNilRegistrar(t *testing.T) {
	if s, err := server.New(nil, "hello"); err == nil {
		s.Stop(context.Background())
		t.Fatalf("New(nil, %q) = nil error, want an error", "hello")
	}
}

// startSlack is how long Start may take beyond the register timeout:
// the listen and serve.
const startSlack = 2 * time.Second

// TestStartAndStopBounded: against a registry that refuses or never
// answers, Start returns within the register timeout (a refusal at
// once), and Stop within the register timeout;
// Stop of a server whose every registration was refused deregisters
// nothing and returns nil.
func TestStartAndStopBounded(t *testing.T) {
	refused := func(t testing.TB) string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }
	for _, tc := range []struct {
		name      string
		open      func(t *testing.T, addr string) (registry.Registrar, error)
		addr      func(t testing.TB) string
		neverSent bool // every attempt refused: Stop has nothing to deregister
	}{
		{"consul refused", func(t *testing.T, a string) (registry.Registrar, error) { return consul.New(a) }, refused, true},
		{"consul frozen", func(t *testing.T, a string) (registry.Registrar, error) { return consul.New(a) }, registrytest.NewFrozenListener, false},
		{"etcd refused", func(t *testing.T, a string) (registry.Registrar, error) { return etcd.New([]string{a}) }, refused, true},
		{"etcd frozen", func(t *testing.T, a string) (registry.Registrar, error) { return etcd.New([]string{a}) }, registrytest.NewFrozenListener, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := tc.open(t, tc.addr(t))
			if err != nil {
				t.Fatal(err)
			}
			defer reg.(registry.Registry).Close()
			var logs cctest.SyncBuffer
			s, err := server.New(reg, "hello", server.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			if err := s.Start(t.Context()); err != nil {
				t.Fatalf("Start() = %v, want nil (serve anyway)", err)
			}
			started := time.Since(t0)
			t.Logf("Start returned in %v", started)
			bound := server.DefaultRegisterTimeout + startSlack
			if tc.neverSent {
				bound = startSlack // a refusal is known at once
			}
			if started > bound {
				t.Errorf("Start() took %v, want it within %v", started, bound)
			}
			wait.For(t, server.DefaultRegisterTimeout+5*time.Second, "a failed registration logged", func() bool {
				return strings.Contains(logs.String(), "register failed")
			})
			t0 = time.Now()
			err = s.Stop(context.Background())
			stopped := time.Since(t0)
			t.Logf("Stop returned in %v: %v", stopped, err)
			if stopped > server.DefaultRegisterTimeout+startSlack {
				t.Errorf("Stop() took %v, want it within the register timeout %v", stopped, server.DefaultRegisterTimeout)
			}
			if tc.neverSent && err != nil {
				t.Errorf("Stop() of a server that never registered = %v, want nil: nothing to deregister", err)
			}
		})
	}
}

// TestRegisterFailureLoggedByDefault: with no logger given, a
// registration that keeps failing reaches slog.Default() at Warn, once,
// not once per retry.
func TestRegisterFailureLoggedByDefault(t *testing.T) {
	var logs cctest.SyncBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(old)

	store := memory.NewStore()
	store.SetOutage(fmt.Errorf("simulated outage"))
	reg := &countingRegistrar{Registry: store.Open()}
	s, err := server.New(reg, "hello", server.WithRegisterTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	wait.For(t, 10*time.Second, "4 failed attempts", func() bool { return reg.attempts.Load() >= 4 })
	store.SetOutage(nil)
	waitRegistered(t, s)
	got := logs.String()
	if n := strings.Count(got, "level=WARN"); n != 1 || !strings.Contains(got, "simulated outage") || !strings.Contains(got, "hello") {
		t.Errorf("slog.Default() got %d warnings:\n%s\nwant 1, naming the instance and the error", n, got)
	}
	if !strings.Contains(got, "registered after failing") {
		t.Errorf("slog.Default() got:\n%s\nwant the recovery at Info", got)
	}
}
