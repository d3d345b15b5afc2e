package benchcmp

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gbalancer "google.golang.org/grpc/balancer"
	_ "google.golang.org/grpc/balancer/roundrobin"

	"github.com/wayfinder-rpc/wayfinder/balancer/custom"
	"github.com/wayfinder-rpc/wayfinder/balancer/hash"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/testing/fakecc"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/testing/lbtest"
	"github.com/wayfinder-rpc/wayfinder/balancer/outlier"
	"github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	"github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	"github.com/wayfinder-rpc/wayfinder/balancer/zone"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// userRR is what a user might write with package custom: plain round
// robin, to measure the wrapper's overhead.
const userRR = "benchcmp_user_round_robin"

func init() {
	var next atomic.Uint64
	custom.Register(userRR, func(_ custom.Call, ready []custom.Endpoint) (int, error) {
		return int(next.Add(1) % uint64(len(ready))), nil
	})
}

var policies = []struct{ name, cfg string }{
	{"round_robin", ""},
	{wrr.Name, ""},
	{p2c.Name, ""},
	{hash.Name, ""},
	{userRR, ""},
	// Both wrap round_robin by default, so they measure their own cost
	// on top of it.
	{zone.Name, ""},
	{outlier.Name, ""},
}

func instances(n int) []registry.Instance {
	out := make([]registry.Instance, n)
	for i := range out {
		out[i] = registry.Instance{ID: fmt.Sprint(i), Service: "s", Address: fmt.Sprintf("10.%d.%d.%d:80", i>>16, i>>8&255, i&255), Weight: i%3 + 1}
	}
	return out
}

// large adds 10,000 endpoints to BenchmarkPick. fakecc delivers each
// READY as its own update, as gRPC does, so every policy builds one
// picker per endpoint while they connect: O(n²), about 50s per policy at
// 10,000 on two cores.
var large = flag.Bool("large", false, "BenchmarkPick also with 10,000 endpoints (setup takes minutes)")

func BenchmarkPick(b *testing.B) {
	keys := make([]gbalancer.PickInfo, 1024)
	for i := range keys {
		keys[i] = gbalancer.PickInfo{Ctx: hash.WithKey(context.Background(), fmt.Sprintf("user-%d", i))}
	}
	sizes := []int{3, 10, 100, 1000}
	if *large {
		sizes = append(sizes, 10000)
	}
	for _, n := range sizes {
		eps := resolver.Endpoints(instances(n))
		for _, pol := range policies {
			h, err := fakecc.Build(pol.name, pol.cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := h.UpdateReady(eps); err != nil {
				b.Fatal(err)
			}
			p, _ := h.CC.Picker()
			r, err := p.Pick(keys[0])
			if err != nil {
				b.Fatalf("%s with %d endpoints: Pick() = %v", pol.name, n, err)
			}
			if r.Done != nil {
				// A call left in flight would make P2C avoid its endpoint
				// for the whole run, computing its decay at every look.
				r.Done(gbalancer.DoneInfo{})
			}
			pick := func(i int) {
				r, err := p.Pick(keys[i&1023])
				if err != nil {
					b.Fatal(err)
				}
				if r.Done != nil {
					r.Done(gbalancer.DoneInfo{})
				}
			}
			b.Run(fmt.Sprintf("n=%d/%s/serial", n, pol.name), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					pick(i)
					i++
				}
			})
			b.Run(fmt.Sprintf("n=%d/%s/parallel", n, pol.name), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						pick(i)
						i++
					}
				})
			})
			h.Close()
		}
	}
}

// BenchmarkThroughput makes real unary calls over loopback to 10 servers
// through each policy, 16 in flight. Throughput over loopback on a shared
// machine drifts by more than the policies differ, so each policy is
// measured in slices alternating with grpc's round_robin on the same
// servers: ns/op is the policy's alone, and x_round_robin is its calls
// per second divided by round_robin's over the same interleaved slices.
// round_robin against itself shows how much of a ratio is noise.
func BenchmarkThroughput(b *testing.B) {
	bs := lbtest.StartBackends(b, 10)
	dial := func(b *testing.B, policy string) hellopb.HelloServiceClient {
		env := lbtest.NewEnv(b)
		for _, be := range bs {
			env.Register(lbtest.Instance(be))
		}
		_, client := env.Dial(`{"` + policy + `":{}}`)
		lbtest.WaitServing(b, client, bs...)
		return client
	}
	base := dial(b, "round_robin")
	for _, pol := range policies {
		b.Run(pol.name, func(b *testing.B) {
			client := dial(b, pol.name)
			const slices = 8
			per := max(b.N/slices, 1)
			var tPol, tBase time.Duration
			b.ResetTimer()
			for done, i := 0, 0; done < b.N; i++ {
				k := min(per, b.N-done)
				// Alternate which goes first, so neither always runs
				// right after the other's garbage.
				if i%2 == 0 {
					tPol += calls(b, client, k)
					b.StopTimer()
					tBase += calls(b, base, k)
					b.StartTimer()
				} else {
					b.StopTimer()
					tBase += calls(b, base, k)
					b.StartTimer()
					tPol += calls(b, client, k)
				}
				done += k
			}
			b.StopTimer()
			if tPol > 0 {
				b.ReportMetric(float64(tBase)/float64(tPol), "x_round_robin")
			}
		})
	}
}

// calls makes n calls, 16 in flight, and returns how long they took.
func calls(b *testing.B, client hellopb.HelloServiceClient, n int) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				ctx := hash.WithKey(context.Background(), strconv.FormatInt(next.Load(), 10))
				if _, err := lbtest.Call(ctx, client); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}
