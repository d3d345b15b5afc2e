package xds_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// startPlain serves the HelloService as name on 127.0.0.1 without
// registering it, and returns the instance to register by hand.
func startPlain(tb testing.TB, name string) registry.Instance {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g := grpc.NewServer()
	hellopb.RegisterHelloServiceServer(g, &hello.Server{Name: name})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(lis)
	}()
	tb.Cleanup(func() {
		g.Stop()
		<-done
	})
	return registry.Instance{ID: name, Service: "hello", Address: lis.Addr().String()}
}

// startInProcess calls through cc in a loop, as the child clients do,
// recording picks in a client.
func startInProcess(tb testing.TB, name string, cc *grpc.ClientConn) *client {
	c := &client{name: name, read: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(c.read)
		hc := hellopb.NewHelloServiceClient(cc)
		first := true
		for ctx.Err() == nil {
			cctx, done := context.WithTimeout(ctx, 5*time.Second)
			reply, err := hc.SayHello(cctx, &hellopb.HelloRequest{Name: "xds"}, grpc.WaitForReady(first))
			done()
			if ctx.Err() != nil {
				return
			}
			c.mu.Lock()
			if err != nil {
				c.fails = append(c.fails, err.Error())
			} else {
				first = false
				msg := reply.GetMessage()
				c.picks = append(c.picks, msg[len("Hello xds, from "):])
				c.at = append(c.at, time.Now())
			}
			c.mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		cancel()
		<-c.read
		if f := c.failures(); len(f) > 0 {
			tb.Errorf("%s: %d failed calls, the first: %s", name, len(f), f[0])
		}
	})
	return c
}

// BenchmarkPropagation measures how long a Register takes to reach a
// client's picks (the first call that reaches the new instance), through
// the xDS server to grpc-go's, Python's and Node's xDS clients, and, as
// the baseline, through Wayfinder's own resolver in process; on the
// memory registry, so that only the path to the client is measured. Each
// iteration registers an instance, waits for its first pick, and
// deregisters it again. Reports p50 and p99 in milliseconds.
//
//	cd xds && go test -run '^$' -bench Propagation -benchtime 50x .
func BenchmarkPropagation(b *testing.B) {
	for _, via := range []string{"resolver", "xds-go", "xds-python", "xds-node"} {
		b.Run(via, func(b *testing.B) {
			store := memory.NewStore()
			reg := store.Open()
			b.Cleanup(func() { reg.Close() })
			startHello(b, reg, "a")
			startHello(b, reg, "b")
			d := startPlain(b, "d")
			var c *client
			switch via {
			case "resolver":
				cache := resolver.NewCache()
				b.Cleanup(func() { cache.Close() })
				cc, err := grpc.NewClient("wayfinder:///hello",
					grpc.WithResolvers(resolver.NewBuilder(reg, resolver.WithCache(cache))),
					grpc.WithTransportCredentials(insecure.NewCredentials()),
					grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { cc.Close() })
				c = startInProcess(b, via, cc)
			default:
				xreg := store.Open()
				b.Cleanup(func() { xreg.Close() })
				_, addr, _ := startXDS(b, xreg, "127.0.0.1:0")
				switch via {
				case "xds-go":
					c = startClient(b, via, addr)
				case "xds-python":
					c = startPython(b, via, addr)
				case "xds-node":
					c = startNode(b, via, addr)
				}
			}
			c.waitPicks(b, 0, "a", "b")
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				mark := c.calls()
				start := time.Now()
				if err := reg.Register(ctx, d); err != nil {
					b.Fatal(err)
				}
				var at time.Time
				wait.For(b, time.Minute, "a pick of d", func() bool {
					var ok bool
					at, ok = c.firstPick(mark, "d")
					return ok
				})
				lat = append(lat, at.Sub(start))
				if err := reg.Deregister(ctx, d); err != nil {
					b.Fatal(err)
				}
				c.waitOnly(b, 50, "a", "b")
			}
			b.StopTimer()
			slices.Sort(lat)
			ms := func(q float64) float64 {
				return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(ms(0.5), "p50-ms")
			b.ReportMetric(ms(0.99), "p99-ms")
			b.ReportMetric(0, "ns/op")
			if testing.Verbose() {
				fmt.Printf("%s: %d changes, p50 %.2f ms, p99 %.2f ms\n", via, len(lat), ms(0.5), ms(0.99))
			}
		})
	}
}
