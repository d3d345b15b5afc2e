package server_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/cctest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitRegistered waits until s is registered: Start waits for the first
// attempt only, which a registry may fail.
func waitRegistered(t testing.TB, s *server.Server) {
	t.Helper()
	select {
	case <-s.Registered():
	case <-time.After(10 * time.Second):
		t.Fatalf("server %v not registered after 10s", s)
	}
}

// orderRecorder wraps a real registry and checks, at each call, whether
// the server answers health checks: it shows the lifecycle's order.
type orderRecorder struct {
	*memory.Registry
	t                                      *testing.T
	servingAtRegister, servingAtDeregister bool
}

func healthy(t *testing.T, addr string) bool {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

func (o *orderRecorder) Register(ctx context.Context, inst registry.Instance) error {
	o.servingAtRegister = healthy(o.t, inst.Address)
	return o.Registry.Register(ctx, inst)
}

func (o *orderRecorder) Deregister(ctx context.Context, inst registry.Instance) error {
	o.servingAtDeregister = healthy(o.t, inst.Address)
	return o.Registry.Deregister(ctx, inst)
}

func TestLifecycleOrder(t *testing.T) {
	rec := &orderRecorder{Registry: memory.New(), t: t}
	s, err := server.New(rec, "hello", server.WithVersion("v1"), server.WithZone("z1"), server.WithWeight(3), server.WithTags("canary"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	waitRegistered(t, s)
	if !rec.servingAtRegister {
		t.Errorf("Register was called before the server answered SERVING")
	}
	insts, err := rec.Lookup(t.Context(), "hello")
	if err != nil || len(insts) != 1 || insts[0].Zone != "z1" || insts[0].Weight != 3 || insts[0].Address != s.Addr().String() {
		t.Fatalf("after Start, Lookup = %+v, %v; want the instance with its attributes", insts, err)
	}
	if !strings.HasPrefix(insts[0].ID, "hello-") {
		t.Errorf("default ID = %q, want hello-<random>", insts[0].ID)
	}
	if err := s.Stop(t.Context()); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	if rec.servingAtDeregister {
		t.Errorf("Deregister was called while health still said SERVING; want NOT_SERVING first")
	}
	if insts, _ := rec.Lookup(t.Context(), "hello"); len(insts) != 0 {
		t.Fatalf("after Stop, Lookup = %v, want empty", insts)
	}
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Errorf("after Stop, the port still accepts connections")
	}
	if err := s.Stop(t.Context()); err != nil {
		t.Errorf("second Stop() = %v, want nil", err)
	}
}

func TestUniqueDefaultIDs(t *testing.T) {
	reg := memory.New()
	var servers []*server.Server
	for range 3 {
		s, err := server.New(reg, "hello")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		waitRegistered(t, s)
		servers = append(servers, s)
	}
	if insts, _ := reg.Lookup(t.Context(), "hello"); len(insts) != 3 {
		t.Fatalf("3 replicas with default IDs gave %d instances, want 3", len(insts))
	}
	for _, s := range servers {
		s.Stop(t.Context())
	}
}

func TestStopWhileRegistryDown(t *testing.T) {
	store := memory.NewStore()
	s, err := server.New(store.Open(), "hello", server.WithRegisterTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitRegistered(t, s)
	store.SetOutage(errors.New("down"))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	err = s.Stop(ctx)
	if !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("Stop() with the registry down = %v, want an error wrapping ErrUnavailable", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Stop() with the registry down used the whole stop context")
	}
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Errorf("after Stop, the port still accepts connections")
	}
}

func TestStartWhileRegistryDown(t *testing.T) {
	store := memory.NewStore()
	store.SetOutage(errors.New("down"))
	reg := store.Open()
	s, err := server.New(reg, "hello", server.WithRegisterTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start() with the registry down = %v, want nil (serve anyway)", err)
	}
	defer s.Stop(context.Background())
	if !healthy(t, s.Addr().String()) {
		t.Fatalf("server does not serve while the registry is down")
	}
	store.SetOutage(nil)
	var insts []registry.Instance
	if !wait.Until(10*time.Second, func() bool {
		insts, err = reg.Lookup(t.Context(), "hello")
		return err == nil && len(insts) == 1
	}) {
		t.Fatalf("registration never reconciled after the registry returned: %v, %v", insts, err)
	}
}

func TestBadConfiguration(t *testing.T) {
	reg := memory.New()
	if _, err := server.New(reg, "bad name"); !errors.Is(err, registry.ErrInvalidService) {
		t.Errorf("New(bad service) = %v, want ErrInvalidService", err)
	}
	s, _ := server.New(reg, "hello", server.WithWeight(-5))
	if err := s.Start(t.Context()); !errors.Is(err, registry.ErrInvalidInstance) || !strings.Contains(err.Error(), "Weight") {
		t.Errorf("Start with weight -5 = %v, want ErrInvalidInstance naming Weight", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	s, _ = server.New(reg, "hello", server.WithListenAddress(lis.Addr().String()))
	if err := s.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("Start on a port in use = %v, want a listen error", err)
	}
}

// TestStopErrorHandledOnce: a deregistration that fails is returned by
// Stop, and so not also logged: the caller decides what to do with it.
func TestStopErrorHandledOnce(t *testing.T) {
	store := memory.NewStore()
	var logs cctest.SyncBuffer
	s, err := server.New(store.Open(), "hello", server.WithRegisterTimeout(200*time.Millisecond),
		server.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitRegistered(t, s)
	store.SetOutage(errors.New("down"))
	if err := s.Stop(t.Context()); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Stop() with the registry down = %v, want an error wrapping ErrUnavailable", err)
	}
	if got := logs.String(); strings.Contains(got, "deregister") {
		t.Errorf("Stop() returned the deregistration error and also logged it:\n%s", got)
	}
}
