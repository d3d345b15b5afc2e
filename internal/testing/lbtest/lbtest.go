// Package lbtest runs policies end to end in tests: real HelloService
// servers on 127.0.0.1:0, registered in a memory registry, dialled through
// Wayfinder's resolver with a real grpc.ClientConn.
package lbtest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Service is the service name backends register under.
const Service = "hello"

// Backend is a real HelloService server whose behaviour tests can change.
type Backend struct {
	hellopb.UnimplementedHelloServiceServer
	Name string
	Addr string

	Calls atomic.Int64 // calls served
	Conns atomic.Int64 // connections accepted
	delay atomic.Int64 // added latency, ns
	fail  atomic.Bool  // answer UNAVAILABLE at once

	srv *grpc.Server
}

// SayHello answers with the backend's name, after its delay.
func (b *Backend) SayHello(ctx context.Context, req *hellopb.HelloRequest) (*hellopb.HelloResponse, error) {
	b.Calls.Add(1)
	if b.fail.Load() {
		return nil, status.Error(codes.Unavailable, b.Name+" is failing")
	}
	if d := time.Duration(b.delay.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	return &hellopb.HelloResponse{Message: b.Name}, nil
}

// Stop stops the server at once.
func (b *Backend) Stop() { b.srv.Stop() }

// SetDelay adds d to every call.
func (b *Backend) SetDelay(d time.Duration) { b.delay.Store(int64(d)) }

// SetFailing makes every call fail with UNAVAILABLE, or stops that.
func (b *Backend) SetFailing(f bool) { b.fail.Store(f) }

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// StartBackends starts n backends named b0..b<n-1>, stopped at cleanup.
func StartBackends(t testing.TB, n int) []*Backend {
	t.Helper()
	bs := make([]*Backend, n)
	for i := range bs {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("net.Listen = %v", err)
		}
		b := &Backend{Name: fmt.Sprintf("b%d", i), Addr: lis.Addr().String(), srv: grpc.NewServer()}
		hellopb.RegisterHelloServiceServer(b.srv, b)
		go b.srv.Serve(countingListener{lis, &b.Conns}) // returns at Stop below
		t.Cleanup(b.srv.Stop)
		bs[i] = b
	}
	return bs
}

// Env is a memory registry with a resolver cache, both closed at cleanup.
type Env struct {
	T     testing.TB
	Reg   *memory.Registry
	Cache *resolver.Cache
}

// NewEnv returns a fresh registry and resolver cache.
func NewEnv(t testing.TB) *Env {
	e := &Env{T: t, Reg: memory.New(), Cache: resolver.NewCache(resolver.WithLinger(0))}
	t.Cleanup(func() {
		e.Cache.Close()
		e.Reg.Close()
	})
	return e
}

// Instance returns the registry instance for b.
func Instance(b *Backend) registry.Instance {
	return registry.Instance{ID: b.Name, Service: Service, Address: b.Addr}
}

// Register registers inst.
func (e *Env) Register(inst registry.Instance) {
	e.T.Helper()
	if err := e.Reg.Register(context.Background(), inst); err != nil {
		e.T.Fatalf("Register(%v) = %v", inst, err)
	}
}

// Deregister deregisters inst.
func (e *Env) Deregister(inst registry.Instance) {
	e.T.Helper()
	if err := e.Reg.Deregister(context.Background(), inst); err != nil {
		e.T.Fatalf("Deregister(%v) = %v", inst, err)
	}
}

// Dial dials the service through Wayfinder's resolver with the given
// loadBalancingConfig entry, such as `{"wayfinder_p2c_ewma":{}}`.
func (e *Env) Dial(lbConfig string, extra ...grpc.DialOption) (*grpc.ClientConn, hellopb.HelloServiceClient) {
	e.T.Helper()
	opts := append([]grpc.DialOption{
		grpc.WithResolvers(resolver.NewBuilder(e.Reg, resolver.WithCache(e.Cache))),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[` + lbConfig + `]}`),
	}, extra...)
	cc, err := grpc.NewClient("wayfinder:///"+Service, opts...)
	if err != nil {
		e.T.Fatalf("grpc.NewClient = %v", err)
	}
	e.T.Cleanup(func() { cc.Close() })
	return cc, hellopb.NewHelloServiceClient(cc)
}

// Call makes one call and returns the name of the backend that answered.
func Call(ctx context.Context, c hellopb.HelloServiceClient, opts ...grpc.CallOption) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := c.SayHello(ctx, &hellopb.HelloRequest{Name: "lbtest"}, opts...)
	if err != nil {
		return "", err
	}
	return r.GetMessage(), nil
}

// Counts makes n calls from conc goroutines and returns how many each
// backend answered. Failed calls count under "error: <code>".
func Counts(ctx context.Context, c hellopb.HelloServiceClient, n, conc int) map[string]int {
	var mu sync.Mutex
	out := map[string]int{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				name, err := Call(ctx, c)
				if err != nil {
					name = "error: " + status.Code(err).String()
				}
				mu.Lock()
				out[name]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// Errors returns the number of failed calls in counts.
func Errors(counts map[string]int) int {
	n := 0
	for k, v := range counts {
		if strings.HasPrefix(k, "error: ") {
			n += v
		}
	}
	return n
}

// WaitServing waits until calls reach every backend in want (and only
// those), proving the client saw the registry's current set.
func WaitServing(t testing.TB, c hellopb.HelloServiceClient, want ...*Backend) {
	t.Helper()
	names := map[string]bool{}
	for _, b := range want {
		names[b.Name] = true
	}
	seen := map[string]bool{}
	wait.For(t, 20*time.Second, fmt.Sprintf("calls to reach %d backends", len(want)), func() bool {
		name, err := Call(context.Background(), c)
		if err != nil {
			return false
		}
		if !names[name] {
			clear(seen)
			return false
		}
		seen[name] = true
		return len(seen) == len(names)
	})
}
