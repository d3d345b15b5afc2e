package resolver_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/leak"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// TestMain closes DefaultCache before looking for leaks: ExampleNewClient
// leaves its watch lingering there, as a program would.
func TestMain(m *testing.M) {
	leak.VerifyTestMain(m, func() { resolver.DefaultCache().Close() })
}

const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// countingDiscovery counts upstream Watch calls on a real registry.
type countingDiscovery struct {
	registry.Discovery
	watches atomic.Int32
}

func (c *countingDiscovery) Watch(ctx context.Context, svc string) (registry.Watcher, error) {
	c.watches.Add(1)
	return c.Discovery.Watch(ctx, svc)
}

func instanceOf(s *testenv.HelloServer) registry.Instance {
	return registry.Instance{ID: s.Name, Service: "hello", Address: s.Addr}
}

func dial(t *testing.T, b gresolver.Builder, target string, extra ...grpc.DialOption) (*grpc.ClientConn, hellopb.HelloServiceClient) {
	t.Helper()
	opts := append([]grpc.DialOption{grpc.WithResolvers(b), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(roundRobin)}, extra...)
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		t.Fatalf("grpc.NewClient(%q) = %v", target, err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc, hellopb.NewHelloServiceClient(cc)
}

func newCache(t *testing.T, opts ...resolver.CacheOption) *resolver.Cache {
	c := resolver.NewCache(append([]resolver.CacheOption{resolver.WithLinger(0)}, opts...)...)
	t.Cleanup(func() { c.Close() })
	return c
}

// serverOf returns the server name in a greeting "Hello x, from NAME".
func serverOf(msg string) string {
	_, after, _ := strings.Cut(msg, ", from ")
	return after
}

// waitForServers calls SayHello until the set of answering servers over a
// window of calls is exactly want, or the deadline passes.
func waitForServers(t *testing.T, c hellopb.HelloServiceClient, want ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	wantSet := map[string]bool{}
	for _, w := range want {
		wantSet[w] = true
	}
	var got map[string]int
	if wait.Until(10*time.Second, func() bool {
		got = map[string]int{}
		for range 4 * len(want) {
			resp, err := c.SayHello(ctx, &hellopb.HelloRequest{Name: "t", Num1: 1, Num2: 2})
			if err != nil {
				continue
			}
			got[serverOf(resp.GetMessage())]++
		}
		ok := len(got) == len(wantSet)
		for s := range got {
			ok = ok && wantSet[s]
		}
		return ok
	}) {
		return
	}
	t.Fatalf("servers answering = %v, want exactly %v", got, want)
}

func TestTrafficFollowsRegistrations(t *testing.T) {
	reg := memory.New()
	a, b := testenv.StartHello(t, "a"), testenv.StartHello(t, "b")
	ctx := t.Context()
	if err := reg.Register(ctx, instanceOf(a)); err != nil {
		t.Fatal(err)
	}
	_, client := dial(t, resolver.NewBuilder(reg, resolver.WithCache(newCache(t))), "wayfinder:///hello")
	waitForServers(t, client, "a")
	if err := reg.Register(ctx, instanceOf(b)); err != nil {
		t.Fatal(err)
	}
	waitForServers(t, client, "a", "b")
	if err := reg.Deregister(ctx, instanceOf(a)); err != nil {
		t.Fatal(err)
	}
	waitForServers(t, client, "b")
	// The answer is real: num1 + num2 computed by the server.
	resp, err := client.SayHello(ctx, &hellopb.HelloRequest{Name: "x", Num1: 40, Num2: 2})
	if err != nil || resp.GetResult() != 42 {
		t.Fatalf("SayHello(40, 2) = %v, %v; want result 42", resp, err)
	}
}

func TestURLTarget(t *testing.T) {
	store := memory.Named("resolver-url-test")
	a := testenv.StartHello(t, "a")
	if err := store.Open().Register(t.Context(), instanceOf(a)); err != nil {
		t.Fatal(err)
	}
	c := newCache(t)
	cc, err := c.NewClient("mem://resolver-url-test/hello", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("NewClient = %v", err)
	}
	defer cc.Close()
	waitForServers(t, hellopb.NewHelloServiceClient(cc), "a")
	if s := c.Stats(); s.Watches != 1 || s.Registries != 1 {
		t.Errorf("Stats() = %+v, want 1 watch over 1 registry", s)
	}
}

func TestLastGoodSetSurvivesRegistryErrors(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	a, b := testenv.StartHello(t, "a"), testenv.StartHello(t, "b")
	for _, s := range []*testenv.HelloServer{a, b} {
		if err := reg.Register(t.Context(), instanceOf(s)); err != nil {
			t.Fatal(err)
		}
	}
	_, client := dial(t, resolver.NewBuilder(reg, resolver.WithCache(newCache(t))), "wayfinder:///hello")
	waitForServers(t, client, "a", "b")

	store.SetOutage(errors.New("simulated outage"))
	for i := range 200 {
		if _, err := client.SayHello(t.Context(), &hellopb.HelloRequest{Name: "t"}); err != nil {
			t.Fatalf("call %d during a registry outage = %v, want success on the last good set", i, err)
		}
	}
	waitForServers(t, client, "a", "b") // both still in use
	store.SetOutage(nil)
	if err := reg.Deregister(t.Context(), instanceOf(a)); err != nil {
		t.Fatal(err)
	}
	waitForServers(t, client, "b") // updates flow again after the outage
}

func TestErrorBeforeFirstSetFailsRPCsClearly(t *testing.T) {
	store := memory.NewStore()
	store.SetOutage(errors.New("registry is down"))
	_, client := dial(t, resolver.NewBuilder(store.Open(), resolver.WithCache(newCache(t))), "wayfinder:///hello")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := client.SayHello(ctx, &hellopb.HelloRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "registry is down") {
		t.Fatalf("SayHello with the registry down from the start = %v, want UNAVAILABLE naming the registry error", err)
	}
}

func TestEmptyServiceFailsRPCs(t *testing.T) {
	reg := memory.New()
	_, client := dial(t, resolver.NewBuilder(reg, resolver.WithCache(newCache(t))), "wayfinder:///hello")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := client.SayHello(ctx, &hellopb.HelloRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("SayHello with no instances = %v, want UNAVAILABLE", err)
	}
	// And it recovers as soon as an instance registers, without waiting
	// for gRPC's resolver backoff.
	a := testenv.StartHello(t, "a")
	if err := reg.Register(t.Context(), instanceOf(a)); err != nil {
		t.Fatal(err)
	}
	waitForServers(t, client, "a")
}

func TestClientConnsShareOneUpstreamWatch(t *testing.T) {
	const conns = 100
	d := &countingDiscovery{Discovery: memory.New()}
	a := testenv.StartHello(t, "a")
	if err := d.Discovery.(registry.Registry).Register(t.Context(), instanceOf(a)); err != nil {
		t.Fatal(err)
	}
	cache := newCache(t)
	b := resolver.NewBuilder(d, resolver.WithCache(cache))
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for range conns {
		_, client := dial(t, b, "wayfinder:///hello")
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			if _, err := client.SayHello(ctx, &hellopb.HelloRequest{}, grpc.WaitForReady(true)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("SayHello = %v", err)
	}
	if n := d.watches.Load(); n != 1 {
		t.Fatalf("%d ClientConns made %d upstream Watch calls, want 1", conns, n)
	}
	if s := cache.Stats(); s.Watches != 1 {
		t.Fatalf("cache.Stats().Watches = %d, want 1", s.Watches)
	}
}

func TestSurvivesIdleMode(t *testing.T) {
	d := &countingDiscovery{Discovery: memory.New()}
	reg := d.Discovery.(registry.Registry)
	a, b := testenv.StartHello(t, "a"), testenv.StartHello(t, "b")
	if err := reg.Register(t.Context(), instanceOf(a)); err != nil {
		t.Fatal(err)
	}
	cache := resolver.NewCache(resolver.WithLinger(time.Minute))
	defer cache.Close()
	cc, client := dial(t, resolver.NewBuilder(d, resolver.WithCache(cache)), "wayfinder:///hello", grpc.WithIdleTimeout(100*time.Millisecond))
	waitForServers(t, client, "a")
	for round := range 2 {
		waitIdle(t, cc)
		// A change while idle must be seen after leaving idle mode.
		if round == 0 {
			if err := reg.Register(t.Context(), instanceOf(b)); err != nil {
				t.Fatal(err)
			}
			waitForServers(t, client, "a", "b")
		} else {
			waitForServers(t, client, "a", "b")
		}
	}
	if n := d.watches.Load(); n != 1 {
		t.Fatalf("idle cycles made %d upstream Watch calls, want 1 (the cache must keep the watch)", n)
	}
	cc.Close()
}

func waitIdle(t *testing.T, cc *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for s := cc.GetState(); s != connectivity.Idle; s = cc.GetState() {
		if !cc.WaitForStateChange(ctx, s) {
			t.Fatalf("ClientConn never went idle; state %v", s)
		}
	}
}

// fakeCC records what a resolver tells gRPC. It is the ClientConn side
// only; the registry and the resolver under test are real.
type fakeCC struct {
	mu      sync.Mutex
	states  []gresolver.State
	errs    []error
	changed chan struct{}
}

func newFakeCC() *fakeCC { return &fakeCC{changed: make(chan struct{}, 100)} }

func (f *fakeCC) UpdateState(s gresolver.State) error {
	f.mu.Lock()
	f.states = append(f.states, s)
	f.mu.Unlock()
	f.changed <- struct{}{}
	return nil
}

func (f *fakeCC) ReportError(err error) {
	f.mu.Lock()
	f.errs = append(f.errs, err)
	f.mu.Unlock()
	f.changed <- struct{}{}
}

func (f *fakeCC) NewAddress([]gresolver.Address) {}
func (f *fakeCC) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{Err: errors.New("no service config")}
}

func (f *fakeCC) counts() (states, errs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.states), len(f.errs)
}

func (f *fakeCC) lastState() gresolver.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.states[len(f.states)-1]
}

func (f *fakeCC) wait(t *testing.T, what string, cond func(states, errs int) bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for !cond(f.counts()) {
		select {
		case <-f.changed:
		case <-deadline:
			s, e := f.counts()
			t.Fatalf("resolver never %s: %d UpdateState, %d ReportError calls", what, s, e)
		}
	}
}

func build(t *testing.T, b gresolver.Builder, target string, cc gresolver.ClientConn) gresolver.Resolver {
	t.Helper()
	tg := gresolver.Target{}
	u, err := parseURL(target)
	if err != nil {
		t.Fatal(err)
	}
	tg.URL = *u
	r, err := b.Build(tg, cc, gresolver.BuildOptions{})
	if err != nil {
		t.Fatalf("Build(%q) = %v", target, err)
	}
	return r
}

func TestNoUpdateWithoutChangeAndErrorsKeepTheSet(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	inst := registry.Instance{ID: "a", Service: "hello", Address: "127.0.0.1:1001", Weight: 3, Zone: "z1"}
	if err := reg.Register(t.Context(), inst); err != nil {
		t.Fatal(err)
	}
	cc := newFakeCC()
	// The guard holds the last instance's removal for its hold; a short
	// one keeps this test quick (TestLastInstanceCovered tests the hold).
	cache := newCache(t, resolver.WithMassRemovalGuard(resolver.DefaultGuardFraction, resolver.DefaultGuardMin, 200*time.Millisecond))
	r := build(t, resolver.NewBuilder(reg, resolver.WithCache(cache)), "wayfinder:///hello", cc)
	defer r.Close()
	cc.wait(t, "pushed the first set", func(s, _ int) bool { return s == 1 })
	got, ok := instance.FromEndpoint(cc.lastState().Endpoints[0])
	if !ok || !got.Equal(inst) {
		t.Fatalf("InstanceFromEndpoint = %+v, %v; want %+v", got, ok, inst)
	}

	// Nothing changes: an identical re-registration, another service,
	// and ResolveNow.
	if err := reg.Register(t.Context(), inst); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(t.Context(), registry.Instance{ID: "x", Service: "other", Address: "127.0.0.1:9"}); err != nil {
		t.Fatal(err)
	}
	r.ResolveNow(gresolver.ResolveNowOptions{})
	time.Sleep(200 * time.Millisecond) // give a wrong update time to show up
	if s, e := cc.counts(); s != 1 || e != 0 {
		t.Fatalf("after no change: %d UpdateState, %d ReportError; want 1, 0", s, e)
	}

	// An outage is reported, never pushed as an empty set.
	store.SetOutage(errors.New("boom"))
	cc.wait(t, "reported the outage", func(_, e int) bool { return e == 1 })
	if s, _ := cc.counts(); s != 1 {
		t.Fatalf("an outage caused an UpdateState; want only ReportError")
	}
	store.SetOutage(nil)
	cc.wait(t, "pushed after recovery", func(s, _ int) bool { return s == 2 })
	if eps := cc.lastState().Endpoints; len(eps) != 1 {
		t.Fatalf("after recovery, pushed %d endpoints, want 1", len(eps))
	}

	// A weight change gives an endpoint with the same address and new
	// attributes, which gRPC sees as the same endpoint (no reconnect).
	inst.Weight = 9
	if err := reg.Register(t.Context(), inst); err != nil {
		t.Fatal(err)
	}
	cc.wait(t, "pushed the weight change", func(s, _ int) bool { return s == 3 })
	got, _ = instance.FromEndpoint(cc.lastState().Endpoints[0])
	if got.Weight != 9 {
		t.Fatalf("weight after change = %d, want 9", got.Weight)
	}

	// A real empty service is pushed as empty.
	if err := reg.Deregister(t.Context(), inst); err != nil {
		t.Fatal(err)
	}
	cc.wait(t, "pushed the empty set", func(s, _ int) bool { return s == 4 })
	if eps := cc.lastState().Endpoints; len(eps) != 0 {
		t.Fatalf("after the last deregistration, pushed %d endpoints, want 0", len(eps))
	}
}

func TestBuildAnswersFromCache(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	if err := reg.Register(t.Context(), registry.Instance{ID: "a", Service: "hello", Address: "127.0.0.1:1001"}); err != nil {
		t.Fatal(err)
	}
	b := resolver.NewBuilder(reg, resolver.WithCache(newCache(t)))
	first := newFakeCC()
	r1 := build(t, b, "wayfinder:///hello", first)
	defer r1.Close()
	first.wait(t, "pushed", func(s, _ int) bool { return s == 1 })
	// With the registry unreachable, a new resolver can only get the set
	// from the cache.
	store.SetOutage(errors.New("down"))
	first.wait(t, "reported", func(_, e int) bool { return e == 1 })
	second := newFakeCC()
	r2 := build(t, b, "wayfinder:///hello", second)
	defer r2.Close()
	second.wait(t, "answered from the cache, then reported the outage", func(s, e int) bool { return s == 1 && e == 1 })
	if eps := second.lastState().Endpoints; len(eps) != 1 {
		t.Fatalf("new resolver during an outage got %d endpoints, want the cached 1", len(eps))
	}
}

func TestBadTargets(t *testing.T) {
	c := newCache(t)
	for _, target := range []string{
		"nosuchscheme:///hello",
		"mem://",
		"mem:///",
		"mem:///bad name",
		"mem:///a/b",
		"mem:///hello?unknown=1",
		"mem://user:hunter2@x/hello",
		"hello",
		"%zz",
	} {
		cc, err := c.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			cc.Close()
			t.Errorf("NewClient(%q) = nil error, want an error", target)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("NewClient(%q) error leaks the password: %v", target, err)
		}
	}
	_, err := c.NewClient("nosuchscheme:///hello")
	if !errors.Is(err, registry.ErrUnknownScheme) || !strings.Contains(err.Error(), "mem") {
		t.Errorf("NewClient(unknown scheme) = %v, want ErrUnknownScheme listing the registered schemes", err)
	}
	// Injected builders reject hosts and parameters.
	b := resolver.NewBuilder(memory.New(), resolver.WithCache(c))
	for _, target := range []string{"wayfinder://host/hello", "wayfinder:///hello?x=1", "wayfinder:///", "wayfinder:///a/b"} {
		u, _ := parseURL(target)
		if r, err := b.Build(gresolver.Target{URL: *u}, newFakeCC(), gresolver.BuildOptions{}); err == nil {
			r.Close()
			t.Errorf("Build(%q) = nil error, want an error", target)
		}
	}
}

func TestCacheCloseStopsEverything(t *testing.T) {
	c := resolver.NewCache(resolver.WithLinger(time.Hour))
	b := resolver.NewBuilder(memory.New(), resolver.WithCache(c))
	r := build(t, b, "wayfinder:///hello", newFakeCC())
	r.Close() // lingers for an hour...
	if s := c.Stats(); s.Watches != 1 {
		t.Fatalf("after Close with linger, Stats().Watches = %d, want 1", s.Watches)
	}
	c.Close() // ...until the cache closes; goleak checks the rest.
	if s := c.Stats(); s.Watches != 0 {
		t.Fatalf("after Cache.Close, Stats().Watches = %d, want 0", s.Watches)
	}
	u, _ := parseURL("wayfinder:///hello")
	if _, err := b.Build(gresolver.Target{URL: *u}, newFakeCC(), gresolver.BuildOptions{}); !errors.Is(err, resolver.ErrCacheClosed) {
		t.Fatalf("Build on a closed cache = %v, want ErrCacheClosed", err)
	}
}
