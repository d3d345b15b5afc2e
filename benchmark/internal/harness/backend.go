package harness

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
)

// Backend is one registry the scenarios run against: the in-process
// memory store, a real Consul server or a real etcd member, all on
// loopback. It lives across the runs of every scenario.
type Backend struct {
	Name    string // "memory", "consul", "etcd" or "zookeeper"
	Version string // the server's version, or the Go module's for memory

	open func(tb testing.TB, c *Counter) (registry.Registry, error)
	// consulAddr, for Consul only, returns the agent's HTTP address, or
	// that of a proxy counting requests in c if c is not nil.
	consulAddr func(tb testing.TB, c *Counter) string
	stop       func(tb testing.TB) // takes the whole registry down
	start      func(tb testing.TB) // brings it back and waits until it answers
	dialOpts   []grpc.DialOption
	sets       SetWriter

	// etcd, for etcd only, is the member: etcd's own naming resolver
	// (etcdnaming.go) dials it, and its metrics count the watches.
	etcd *testenv.EtcdMember
}

// BackendConfig describes a backend built outside this package, such as
// the Kubernetes one, which lives in a Go module of its own so that the
// harness's module never imports client-go.
type BackendConfig struct {
	Name    string
	Version string
	// Open returns a new client of the registry with its own
	// connection; if c is not nil, it counts in c (Counter.Add) every
	// request the client sends to the registry.
	Open func(tb testing.TB, c *Counter) (registry.Registry, error)
	// Stop takes the whole registry down; Start brings it back and
	// returns once it answers. Either may be nil if the backend runs
	// no scenario that needs them (rolling_restart does not; outage
	// does).
	Stop, Start func(tb testing.TB)
	// DialOptions are added to every ClientConn the scenarios dial, for
	// example a dialer that maps the addresses the registry accepts to
	// the loopback servers behind them.
	DialOptions []grpc.DialOption
	// Sets, if not nil, writes a service's instances in sets, as the
	// registry's own producers do (Kubernetes: EndpointSlices). The
	// scale scenario then runs on this backend too, writing its large
	// service in sets of Config.ScaleSetSize and changing one set at a
	// time.
	Sets SetWriter
}

// SetWriter writes the instances of a service as named sets, each
// replaced as a whole.
type SetWriter interface {
	// PutSet creates or replaces set name of service svc, holding
	// exactly insts (all with the same port).
	PutSet(ctx context.Context, svc, name string, insts []registry.Instance) error
}

// NewBackend returns a backend built from cfg.
func NewBackend(cfg BackendConfig) *Backend {
	unsupported := func(what string) func(testing.TB) {
		return func(tb testing.TB) { tb.Fatalf("bench: backend %s cannot %s", cfg.Name, what) }
	}
	b := &Backend{Name: cfg.Name, Version: cfg.Version, open: cfg.Open, stop: cfg.Stop, start: cfg.Start,
		dialOpts: cfg.DialOptions, sets: cfg.Sets}
	if b.stop == nil {
		b.stop = unsupported("stop")
	}
	if b.start == nil {
		b.start = unsupported("start")
	}
	return b
}

// Open returns a new client of the registry with its own connection,
// closed with tb. If c is not nil, every request the client sends to the
// registry is counted in c.
func (b *Backend) Open(tb testing.TB, c *Counter) registry.Registry {
	tb.Helper()
	r, err := b.open(tb, c)
	if err != nil {
		tb.Fatalf("bench: open %s: %v", b.Name, err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// Stop takes the whole registry down: every server stops (Consul, etcd),
// or every call fails with registry.ErrUnavailable (memory).
func (b *Backend) Stop(tb testing.TB) { b.stop(tb) }

// Start undoes Stop and returns once the registry answers again.
func (b *Backend) Start(tb testing.TB) { b.start(tb) }

// Counter counts the requests registry clients send, by kind.
type Counter struct {
	mu sync.Mutex
	n  map[string]int64
	on atomic.Bool
}

// NewCounter returns a counter that counts from the start.
func NewCounter() *Counter {
	c := &Counter{n: map[string]int64{}}
	c.on.Store(true)
	return c
}

// Add counts one request of kind. It may be called on a nil Counter.
func (c *Counter) Add(kind string) { c.add(kind) }

func (c *Counter) add(kind string) {
	if c == nil || !c.on.Load() {
		return
	}
	c.mu.Lock()
	c.n[kind]++
	c.mu.Unlock()
}

// Reset zeroes the counts.
func (c *Counter) Reset() {
	c.mu.Lock()
	clear(c.n)
	c.mu.Unlock()
}

// Total returns the number of requests counted.
func (c *Counter) Total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var t int64
	for _, k := range c.n {
		t += k
	}
	return t
}

// Counts returns a copy of the counts by kind.
func (c *Counter) Counts() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

// NewMemory returns the in-process backend. Requests counted are the
// calls of Lookup and Watch: an idle memory watcher makes none.
func NewMemory() *Backend {
	store := memory.NewStore()
	return &Backend{
		Name:    "memory",
		Version: "in-process",
		open: func(_ testing.TB, c *Counter) (registry.Registry, error) {
			return &countingRegistry{Registry: store.Open(), c: c}, nil
		},
		stop:  func(testing.TB) { store.SetOutage(fmt.Errorf("%w: bench outage", registry.ErrUnavailable)) },
		start: func(testing.TB) { store.SetOutage(nil) },
	}
}

type countingRegistry struct {
	registry.Registry
	c *Counter
}

func (r *countingRegistry) Lookup(ctx context.Context, svc string) ([]registry.Instance, error) {
	r.c.add("Lookup")
	return r.Registry.Lookup(ctx, svc)
}

func (r *countingRegistry) Watch(ctx context.Context, svc string) (registry.Watcher, error) {
	r.c.add("Watch")
	return r.Registry.Watch(ctx, svc)
}

// NewConsul starts a Consul server (not a dev agent: its state is on
// disk, so it survives Stop and Start) on loopback, for the life of tb.
// Requests are counted by a reverse proxy on loopback in front of it,
// one per HTTP request, by path.
func NewConsul(tb testing.TB) *Backend {
	tb.Helper()
	agent := testenv.StartConsulWith(tb, testenv.ConsulOptions{Server: true})
	return &Backend{
		Name:    "consul",
		Version: binVersion(testenv.ConsulBinEnv, "version"),
		open: func(tb testing.TB, c *Counter) (registry.Registry, error) {
			addr := agent.HTTPAddr()
			if c != nil {
				addr = countingProxy(tb, agent.URL(), c)
			}
			return consul.New(addr)
		},
		consulAddr: func(tb testing.TB, c *Counter) string {
			if c != nil {
				return countingProxy(tb, agent.URL(), c)
			}
			return agent.HTTPAddr()
		},
		stop:  func(testing.TB) { agent.Stop() },
		start: func(tb testing.TB) { agent.Start(tb) },
	}
}

// countingProxy starts a reverse proxy on 127.0.0.1 that counts each
// request by path and forwards it to target. It returns its address.
func countingProxy(tb testing.TB, target string, c *Counter) string {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil {
		tb.Fatalf("bench: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("bench: %v", err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0) // cancelled long polls and outages are expected
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := r.URL.Path
		if strings.HasPrefix(kind, "/v1/health/service/") {
			kind = "/v1/health/service/*"
		}
		c.add(kind)
		rp.ServeHTTP(w, r)
	})}
	done := make(chan struct{})
	go func() { // owned: ends at Close below
		defer close(done)
		srv.Serve(lis)
	}()
	tb.Cleanup(func() {
		srv.Close()
		<-done
	})
	return lis.Addr().String()
}

// NewEtcd starts an etcd member on loopback for the life of tb. Requests
// are counted on the wire by client interceptors: one per unary call and
// one per message sent on a stream (a watch creation, a keepalive).
func NewEtcd(tb testing.TB) *Backend {
	tb.Helper()
	m := testenv.StartEtcd(tb)
	return &Backend{
		Name:    "etcd",
		Version: binVersion(testenv.EtcdBinEnv, "--version"),
		open: func(_ testing.TB, c *Counter) (registry.Registry, error) {
			var opts []etcd.Option
			if c != nil {
				opts = append(opts, etcd.WithDialOptions(c.dialOptions()...))
			}
			return etcd.New([]string{m.ClientAddr}, opts...)
		},
		stop:  func(tb testing.TB) { m.Stop(tb) },
		start: func(tb testing.TB) { m.Restart(tb) },
		etcd:  m,
	}
}

func (c *Counter) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			c.add(method)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			cs, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, err
			}
			return &countingStream{ClientStream: cs, c: c, method: method}, nil
		}),
	}
}

type countingStream struct {
	grpc.ClientStream
	c      *Counter
	method string
}

func (s *countingStream) SendMsg(m any) error {
	s.c.add(s.method)
	return s.ClientStream.SendMsg(m)
}

func lookupEnvBin(env string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	name := "consul"
	if env == testenv.EtcdBinEnv {
		name = "etcd"
	}
	p, _ := exec.LookPath(name)
	return p
}

// binVersion runs the server binary named by env with arg and returns
// the first line of its output.
func binVersion(env, arg string) string {
	bin := lookupEnvBin(env)
	if bin == "" {
		return "unknown"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, arg).Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}
