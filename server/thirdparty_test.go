package server_test

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// These tests run the third-party tools operators point at a gRPC server,
// grpc-health-probe and grpcurl, built by `make servers` from their tools
// modules (internal/tools), against a real server.Server.

// grpc-health-probe's exit codes (its main.go).
const (
	probeServing   = 0
	probeUnhealthy = 4
)

// runTool runs bin with args, bounded, and returns its exit code and its
// combined output. It fails t if the binary could not run at all.
func runTool(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit) && ctx.Err() == nil:
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	return 0, ""
}

// probe runs grpc-health-probe against addr for service, with timeouts
// that a loaded 2-core machine under -race meets.
func probe(t *testing.T, addr, service string) (int, string) {
	t.Helper()
	return runTool(t, testenv.HealthProbeBinary(t), "-addr", addr, "-service", service,
		"-connect-timeout", "10s", "-rpc-timeout", "10s")
}

// holdingRegistry holds Deregister until release is closed, so that the
// drain, which Stop begins by setting NOT_SERVING, lasts as long as the
// test looks at it; held is closed when Deregister is entered.
type holdingRegistry struct {
	*memory.Registry
	held, release chan struct{}
}

func (h *holdingRegistry) Deregister(ctx context.Context, inst registry.Instance) error {
	close(h.held)
	select {
	case <-h.release:
	case <-ctx.Done():
	}
	return h.Registry.Deregister(ctx, inst)
}

// TestHealthProbe: grpc-health-probe -service, by every name a
// HelloService server publishes, gets SERVING; once Stop has begun to
// drain, it gets NOT_SERVING (exit code 4) for the proto service name.
func TestHealthProbe(t *testing.T) {
	reg := &holdingRegistry{Registry: memory.New(), held: make(chan struct{}), release: make(chan struct{})}
	s, err := server.New(reg, "hello")
	if err != nil {
		t.Fatal(err)
	}
	hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: "h"})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	for _, name := range healthNames {
		if code, out := probe(t, addr, name); code != probeServing || !strings.Contains(out, "status: SERVING") {
			t.Errorf("grpc-health-probe -service %q = exit %d, %q; want exit 0, status: SERVING", name, code, out)
		}
	}

	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(context.Background()) }()
	select {
	case <-reg.held:
	case err := <-stopped:
		t.Fatalf("Stop returned %v before deregistering", err)
	case <-t.Context().Done():
		t.Fatal("Stop never deregistered")
	}
	proto := hellopb.HelloService_ServiceDesc.ServiceName
	code, out := probe(t, addr, proto)
	close(reg.release)
	if err := <-stopped; err != nil {
		t.Errorf("Stop = %v", err)
	}
	if code != probeUnhealthy || !strings.Contains(out, `"NOT_SERVING"`) {
		t.Errorf("during the drain, grpc-health-probe -service %q = exit %d, %q; want exit 4, NOT_SERVING", proto, code, out)
	}
}

// TestGRPCurl: with WithReflection, grpcurl lists and describes the
// server's services and calls SayHello from JSON, with no compiled-in
// stubs.
func TestGRPCurl(t *testing.T) {
	s, err := server.New(memory.New(), "hello", server.WithReflection())
	if err != nil {
		t.Fatal(err)
	}
	hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: "h"})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	addr := s.Addr().String()
	grpcurl := func(args ...string) string {
		t.Helper()
		args = append([]string{"-plaintext", "-max-time", "10"}, args...)
		code, out := runTool(t, testenv.GRPCurlBinary(t), args...)
		if code != 0 {
			t.Fatalf("grpcurl %s = exit %d, %q; want exit 0", strings.Join(args, " "), code, out)
		}
		return out
	}
	proto := hellopb.HelloService_ServiceDesc.ServiceName

	out := grpcurl(addr, "list")
	listed := strings.Fields(out)
	for _, want := range []string{proto, "grpc.health.v1.Health"} {
		if !slices.Contains(listed, want) {
			t.Errorf("grpcurl list = %q; want %s listed", out, want)
		}
	}

	out = grpcurl(addr, "describe", proto)
	if !strings.Contains(out, "rpc SayHello ( .wayfinder.examples.hello.HelloRequest ) returns ( .wayfinder.examples.hello.HelloResponse )") {
		t.Errorf("grpcurl describe %s = %q; want the SayHello method", proto, out)
	}

	out = grpcurl("-d", `{"name":"x","num1":1,"num2":2}`, addr, proto+"/SayHello")
	for _, want := range []string{`"message": "Hello x, from h"`, `"result": 3`} {
		if !strings.Contains(out, want) {
			t.Errorf("grpcurl SayHello = %q; want %s", out, want)
		}
	}
}
