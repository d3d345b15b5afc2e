package harness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// helloServer is a real HelloService server on 127.0.0.1:0 whose answers
// can be delayed, to stall it.
type helloServer struct {
	hellopb.UnimplementedHelloServiceServer
	name  string
	addr  string
	srv   *grpc.Server
	delay atomic.Int64 // nanoseconds added to every call
	calls atomic.Int64
}

func startHello(tb testing.TB, name string) *helloServer {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("bench: listen: %v", err)
	}
	h := &helloServer{name: name, addr: lis.Addr().String(), srv: grpc.NewServer()}
	hellopb.RegisterHelloServiceServer(h.srv, h)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(h.srv, hs)
	done := make(chan struct{})
	go func() { // owned: ends when the server stops below
		defer close(done)
		h.srv.Serve(lis)
	}()
	tb.Cleanup(func() {
		hs.Shutdown()
		h.srv.Stop()
		<-done
	})
	return h
}

func (h *helloServer) SayHello(ctx context.Context, req *hellopb.HelloRequest) (*hellopb.HelloResponse, error) {
	h.calls.Add(1)
	if d := time.Duration(h.delay.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	return &hellopb.HelloResponse{Message: "hello " + req.GetName() + " from " + h.name}, nil
}

func (h *helloServer) instance(svc string) registry.Instance {
	return registry.Instance{ID: h.name, Service: svc, Address: h.addr}
}

// serverOf returns the server name from a reply of helloServer or
// hello.Server ("... from <name>").
func serverOf(msg string) string {
	_, name, _ := strings.Cut(msg, " from ")
	return name
}

// dial returns a ClientConn for svc through a Wayfinder resolver over d
// with the given policy and options (a Backend's DialOptions), closed
// with tb.
func dial(tb testing.TB, d registry.Discovery, cache *resolver.Cache, svc, policy string, opts ...grpc.DialOption) (*grpc.ClientConn, hellopb.HelloServiceClient) {
	tb.Helper()
	return dialConfig(tb, d, cache, svc, fmt.Sprintf(`{%q:{}}`, policy), opts...)
}

// dialConfig is dial with a loadBalancingConfig entry, such as
// `{"ring_hash_experimental":{"requestHashHeader":"x"}}`.
func dialConfig(tb testing.TB, d registry.Discovery, cache *resolver.Cache, svc, lbConfig string, opts ...grpc.DialOption) (*grpc.ClientConn, hellopb.HelloServiceClient) {
	tb.Helper()
	cc, err := grpc.NewClient("wayfinder:///"+svc, append([]grpc.DialOption{
		grpc.WithResolvers(resolver.NewBuilder(d, resolver.WithCache(cache))),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[` + lbConfig + `]}`)}, opts...)...)
	if err != nil {
		tb.Fatalf("bench: NewClient: %v", err)
	}
	tb.Cleanup(func() { cc.Close() })
	return cc, hellopb.NewHelloServiceClient(cc)
}

// dialBlocking returns a ClientConn for svc through the blocking-query
// baseline b, with round_robin, closed with tb.
func dialBlocking(tb testing.TB, b *blockingBuilder, svc string) (*grpc.ClientConn, hellopb.HelloServiceClient) {
	tb.Helper()
	cc, err := grpc.NewClient(blockingScheme+":///"+svc,
		grpc.WithResolvers(b),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		tb.Fatalf("bench: NewClient: %v", err)
	}
	tb.Cleanup(func() { cc.Close() })
	return cc, hellopb.NewHelloServiceClient(cc)
}

// newCache returns a cache without linger, closed with tb.
func newCache(tb testing.TB) *resolver.Cache {
	c := resolver.NewCache(resolver.WithLinger(0))
	tb.Cleanup(func() { c.Close() })
	return c
}

// call makes one SayHello with timeout d and returns the server's name.
func call(ctx context.Context, c hellopb.HelloServiceClient, d time.Duration, opts ...grpc.CallOption) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	resp, err := c.SayHello(cctx, &hellopb.HelloRequest{Name: "bench"}, opts...)
	if err != nil {
		return "", err
	}
	return serverOf(resp.GetMessage()), nil
}

// waitServing waits until calls reach every server in names, within d.
func waitServing(ctx context.Context, c hellopb.HelloServiceClient, d time.Duration, names ...string) error {
	deadline := time.Now().Add(d)
	seen := map[string]bool{}
	for time.Now().Before(deadline) {
		name, err := call(ctx, c, time.Second, grpc.WaitForReady(true))
		if err == nil {
			seen[name] = true
		}
		all := true
		for _, n := range names {
			all = all && seen[n]
		}
		if all {
			return nil
		}
	}
	return fmt.Errorf("bench: calls did not reach all of %v within %v (reached %v)", names, d, seen)
}

// register registers inst, retrying for up to d (a registry that just
// came back may refuse the first attempts).
func register(ctx context.Context, r registry.Registrar, inst registry.Instance, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := r.Register(cctx, inst)
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		sleep(ctx, 20*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// jitter returns a random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// load makes calls from workers goroutines, each waiting every between
// calls, until stop is called, and counts the failures. Each call has
// deadline timeout.
type load struct {
	calls, failures atomic.Int64
	cancel          context.CancelFunc
	wg              sync.WaitGroup

	mu      sync.Mutex
	lastErr error
	perSrv  map[string]int64
}

func startLoad(client hellopb.HelloServiceClient, workers int, every, timeout time.Duration) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, perSrv: map[string]int64{}}
	for range workers {
		l.wg.Go(func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				name, err := call(context.Background(), client, timeout)
				l.calls.Add(1)
				l.mu.Lock()
				if err != nil {
					l.failures.Add(1)
					l.lastErr = err
				} else {
					l.perSrv[name]++
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// stop stops the workers and waits for them. It is idempotent.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// served returns how many calls server name answered.
func (l *load) served(name string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perSrv[name]
}

func (l *load) snapshot() (calls, failures int64) { return l.calls.Load(), l.failures.Load() }

func (l *load) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

// ids returns the sorted IDs of insts.
func ids(insts []registry.Instance) []string {
	out := make([]string, len(insts))
	for i, in := range insts {
		out[i] = in.ID
	}
	slices.Sort(out)
	return out
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
