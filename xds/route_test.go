package xds_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/server"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

// startService starts a server named name for service "hello" in reg
// whose HelloService is svc, until the test ends.
func startService(t *testing.T, reg registry.Registrar, name string, svc hellopb.HelloServiceServer) {
	t.Helper()
	srv, err := server.New(reg, "hello", server.WithID(name))
	if err != nil {
		t.Fatalf("server.New() = %v", err)
	}
	hellopb.RegisterHelloServiceServer(srv.GRPC(), svc)
	if err := srv.Start(t.Context()); err != nil {
		t.Fatalf("Start(%s) = %v", name, err)
	}
	t.Cleanup(func() {
		stopClients(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("Stop(%s) = %v", name, err)
		}
	})
}

// firstAttemptFails fails every call's first attempt with UNAVAILABLE:
// a retry carries grpc-previous-rpc-attempts (gRFC A6), and succeeds.
type firstAttemptFails struct{ hello.Server }

func (s *firstAttemptFails) SayHello(ctx context.Context, req *hellopb.HelloRequest) (*hellopb.HelloResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get("grpc-previous-rpc-attempts")) == 0 {
		return nil, status.Error(codes.Unavailable, "first attempts fail")
	}
	return s.Server.SayHello(ctx, req)
}

// TestRouteRetry: with a route that retries UNAVAILABLE, calls to a
// server that fails every first attempt succeed, in Go, Python and Node
// clients alike: no call fails (checked as each client stops).
func TestRouteRetry(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	startService(t, reg, "flaky", &firstAttemptFails{hello.Server{Name: "flaky"}})
	srv, addr, _ := startXDS(t, reg, "127.0.0.1:0", xds.WithRoute("hello", xds.Route{
		Retry: &xds.Retry{On: []codes.Code{codes.Unavailable}, NumRetries: 2, BaseBackoff: 10 * time.Millisecond},
	}))
	for _, c := range []*client{startClient(t, "go", addr), startPython(t, "python", addr), startNode(t, "node", addr)} {
		c.waitPicks(t, 0, "flaky")
		c.waitCalls(t, c.calls(), 200)
	}
	if n := srv.Stats().NACKs; n != 0 {
		t.Errorf("Stats().NACKs = %d, want 0: %+v", n, srv.Clients())
	}
}

// neverAnswers holds every call until it ends, and records how long
// each had to its deadline when it arrived, by the x-client header.
type neverAnswers struct {
	hellopb.UnimplementedHelloServiceServer
	mu   sync.Mutex
	left map[string][]time.Duration
}

func (s *neverAnswers) SayHello(ctx context.Context, _ *hellopb.HelloRequest) (*hellopb.HelloResponse, error) {
	left := time.Duration(1<<63 - 1) // no deadline
	if d, ok := ctx.Deadline(); ok {
		left = time.Until(d)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.left[strings.Join(md.Get("x-client"), ",")] = append(s.left[strings.Join(md.Get("x-client"), ",")], left)
	s.mu.Unlock()
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

func (s *neverAnswers) calls(client string) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.left[client])
}

// TestRouteTimeout: a route timeout of 1s caps every call's deadline
// (the first call of each client asks for 60s, the others 5s): in Go and
// Node clients the server sees each call arrive with at most 1s to go,
// and each call ends with DEADLINE_EXCEEDED (Node's, now and then, with
// CANCELLED). Python's grpcio 1.51 ends its calls with DEADLINE_EXCEEDED
// too, but at once: none reaches the server (with 3s, calls reached it
// with the client's own 60s deadline and were cut later), so Python is
// checked for the code only.
func TestRouteTimeout(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	slow := &neverAnswers{left: map[string][]time.Duration{}}
	startService(t, reg, "slow", slow)
	const timeout = time.Second
	srv, addr, _ := startXDS(t, reg, "127.0.0.1:0", xds.WithRoute("hello", xds.Route{Timeout: timeout}))
	for _, c := range []*client{
		startClient(t, "go", addr, "x-client=go"),
		startPython(t, "python", addr, "x-client=python"),
		startNode(t, "node", addr, "x-client=node"),
	} {
		wait.For(t, 60*time.Second, c.name+"'s calls to fail", func() bool {
			return len(c.failures()) >= 3 && (c.name == "python" || len(slow.calls(c.name)) >= 3)
		})
		for _, left := range slow.calls(c.name) {
			if c.name == "python" {
				break
			}
			if left > timeout {
				t.Errorf("%s: a call arrived with %v to its deadline, want at most %v", c.name, left, timeout)
			}
		}
		c.stop(t)
		c.mu.Lock()
		fails := c.fails
		c.fails = nil // expected: every call times out
		c.mu.Unlock()
		cancelled := 0
		for _, f := range fails {
			switch {
			case strings.HasPrefix(f, "err DeadlineExceeded "), strings.HasPrefix(f, "err DEADLINE_EXCEEDED "):
			case strings.HasPrefix(f, "err CANCELLED "):
				// Node, now and then, on a call its timer cut.
				cancelled++
			default:
				t.Errorf("%s: a call ended with %q, want DEADLINE_EXCEEDED", c.name, f)
			}
		}
		if cancelled == len(fails) {
			t.Errorf("%s: %d calls, all CANCELLED, want DEADLINE_EXCEEDED", c.name, cancelled)
		}
		seen := slow.calls(c.name)
		t.Logf("%s: %d calls cut, the first %q; the server saw %d, with at most %v to go", c.name, len(fails), fails[0], len(seen), slices.Max(append(seen, 0)))
	}
	if n := srv.Stats().NACKs; n != 0 {
		t.Errorf("Stats().NACKs = %d, want 0: %+v", n, srv.Clients())
	}
}

func TestRouteOptions(t *testing.T) {
	reg := memory.New()
	t.Cleanup(func() { reg.Close() })
	un := []codes.Code{codes.Unavailable}
	for name, r := range map[string]xds.Route{
		"negative timeout":    {Timeout: -time.Second},
		"no code":             {Retry: &xds.Retry{}},
		"code clients ignore": {Retry: &xds.Retry{On: []codes.Code{codes.NotFound}}},
		"5 retries":           {Retry: &xds.Retry{On: un, NumRetries: 5}},
		"negative retries":    {Retry: &xds.Retry{On: un, NumRetries: -1}},
		"negative backoff":    {Retry: &xds.Retry{On: un, BaseBackoff: -time.Second}},
		"max backoff < base":  {Retry: &xds.Retry{On: un, BaseBackoff: time.Second, MaxBackoff: time.Millisecond}},
	} {
		if s, err := xds.New(reg, xds.WithRoute("hello", r)); err == nil {
			s.Close()
			t.Errorf("%s: xds.New(WithRoute(%+v)): nil error", name, r)
		}
	}
	if s, err := xds.New(reg, xds.WithRoute("", xds.Route{Timeout: time.Second})); err == nil {
		s.Close()
		t.Errorf("xds.New(WithRoute(\"\")): nil error")
	}
	s, err := xds.New(reg, xds.WithRoute("hello", xds.Route{Timeout: time.Second, Retry: &xds.Retry{On: []codes.Code{codes.Unavailable, codes.ResourceExhausted}, NumRetries: 4}}))
	if err != nil {
		t.Fatalf("xds.New(WithRoute(timeout and retries)) = %v", err)
	}
	s.Close()
}
