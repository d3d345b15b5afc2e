package etcd_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// minChanges is the least number of changes of each kind (register,
// deregister) a latency benchmark measures, whatever b.N is, so that its
// p99 means something.
const minChanges = 200

func reportLatencies(b *testing.B, name string, d []time.Duration) {
	slices.Sort(d)
	q := func(p float64) float64 {
		return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), name+"-p50-ms")
	b.ReportMetric(q(0.99), name+"-p99-ms")
	b.ReportMetric(float64(d[len(d)-1].Microseconds())/1000, name+"-max-ms")
}

// BenchmarkPropagation measures the time from Register (or Deregister)
// returning in one client until Watcher.Next returns the changed set in
// another, over at least 200 changes of each kind.
func BenchmarkPropagation(b *testing.B) {
	srv := testenv.StartEtcd(b)
	reg := newRegistry(b, []string{srv.Endpoint()})
	cli := newRegistry(b, []string{srv.Endpoint()})
	svc := svcName(b)
	stable := inst(svc, 0)
	if err := reg.Register(ctxFor(b, 10*time.Second), stable); err != nil {
		b.Fatal(err)
	}
	w, err := cli.Watch(ctxFor(b, time.Second), svc)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	next := func(want int) {
		for {
			set, err := w.Next(ctxFor(b, 10*time.Second))
			if err != nil {
				b.Fatalf("Next() = %v", err)
			}
			if len(set) == want {
				return
			}
		}
	}
	next(1)
	var add, del []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N || len(add) < minChanges; i++ {
		x := inst(svc, i+1)
		start := time.Now()
		if err := reg.Register(ctxFor(b, 10*time.Second), x); err != nil {
			b.Fatal(err)
		}
		next(2)
		add = append(add, time.Since(start))
		start = time.Now()
		if err := reg.Deregister(ctxFor(b, 10*time.Second), x); err != nil {
			b.Fatal(err)
		}
		next(1)
		del = append(del, time.Since(start))
	}
	b.StopTimer()
	reportLatencies(b, "register", add)
	reportLatencies(b, "deregister", del)
	reportLatencies(b, "all", append(add, del...))
}

// BenchmarkPickerPropagation measures the same through gRPC: from Register
// until an RPC is answered by the new server (the picker includes it), and
// from Deregister until three RPCs in a row are answered by the other
// server (the picker excludes it). Round robin alternates between ready
// servers, so three in a row from one server means the other is gone.
func BenchmarkPickerPropagation(b *testing.B) {
	srv := testenv.StartEtcd(b)
	reg := newRegistry(b, []string{srv.Endpoint()})
	svc := svcName(b)
	stayS, moveS := testenv.StartHello(b, "stay"), testenv.StartHello(b, "move")
	stay, move := inst(svc, 0), inst(svc, 1)
	stay.Address, move.Address = stayS.Addr, moveS.Addr
	if err := reg.Register(ctxFor(b, 10*time.Second), stay); err != nil {
		b.Fatal(err)
	}
	cache := resolver.NewCache()
	defer cache.Close()
	conn, err := cache.NewClient("etcd://"+srv.Endpoint()+"/"+svc,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := hellopb.NewHelloServiceClient(conn)
	call := func() string {
		resp, err := client.SayHello(ctxFor(b, 10*time.Second), &hellopb.HelloRequest{Name: "b"}, grpc.WaitForReady(true))
		if err != nil {
			b.Fatalf("SayHello = %v", err)
		}
		m := resp.GetMessage()
		return m[strings.LastIndex(m, " ")+1:]
	}
	call()
	var add, del []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N || len(add) < minChanges; i++ {
		start := time.Now()
		if err := reg.Register(ctxFor(b, 10*time.Second), move); err != nil {
			b.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); call() != "move"; {
			if time.Now().After(deadline) {
				b.Fatal("the picker never included the registered server")
			}
		}
		add = append(add, time.Since(start))
		start = time.Now()
		if err := reg.Deregister(ctxFor(b, 10*time.Second), move); err != nil {
			b.Fatal(err)
		}
		for run, deadline := 0, time.Now().Add(10*time.Second); run < 3; {
			if call() == "stay" {
				run++
			} else {
				run = 0
			}
			if time.Now().After(deadline) {
				b.Fatal("the picker never excluded the deregistered server")
			}
		}
		del = append(del, time.Since(start))
	}
	b.StopTimer()
	reportLatencies(b, "include", add)
	reportLatencies(b, "exclude", del)
}

// rpcCounter counts the messages a client sends, per gRPC method.
type rpcCounter struct {
	mu sync.Mutex
	n  map[string]int
	on atomic.Bool
}

func (c *rpcCounter) add(method string) {
	if !c.on.Load() {
		return
	}
	c.mu.Lock()
	c.n[method]++
	c.mu.Unlock()
}

func (c *rpcCounter) options() []grpc.DialOption {
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
	c      *rpcCounter
	method string
}

func (s *countingStream) SendMsg(m any) error {
	s.c.add(s.method)
	return s.ClientStream.SendMsg(m)
}

// BenchmarkKeepAliveCost counts, on the wire, every request message a
// registering client sends to etcd in steady state (after registration),
// over a window of two TTLs, and reports it per instance per minute.
// Keepalives go every TTL/3 for the one lease all instances share.
func BenchmarkKeepAliveCost(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			srv := testenv.StartEtcd(b)
			counter := &rpcCounter{n: map[string]int{}}
			reg := newRegistry(b, []string{srv.Endpoint()}, etcd.WithDialOptions(counter.options()...))
			svc := svcName(b)
			for i := range n {
				if err := reg.Register(ctxFor(b, 10*time.Second), inst(svc, i)); err != nil {
					b.Fatal(err)
				}
			}
			window := 2 * reg.TTL()
			for range b.N {
				counter.on.Store(true)
				time.Sleep(window) // the measurement is what happens while nothing changes
				counter.on.Store(false)
			}
			counter.mu.Lock()
			defer counter.mu.Unlock()
			minutes := (time.Duration(b.N) * window).Minutes()
			var total int
			for method, k := range counter.n {
				total += k
				b.Logf("%s: %d messages in %v", method, k, time.Duration(b.N)*window)
			}
			ka := counter.n["/etcdserverpb.Lease/LeaseKeepAlive"]
			b.ReportMetric(float64(ka)/minutes/float64(n), "keepalives/instance/min")
			b.ReportMetric(float64(total)/minutes/float64(n), "requests/instance/min")
			b.ReportMetric(float64(ka)/minutes, "keepalives/process/min")
			if got := reg.LeaseState(); !got.Healthy() || got.Registered != n {
				b.Fatalf("LeaseState() = %+v after the window", got)
			}
		})
	}
}
