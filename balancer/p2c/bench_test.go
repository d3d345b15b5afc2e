package p2c_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	gbalancer "google.golang.org/grpc/balancer"
	_ "google.golang.org/grpc/balancer/leastrequest" // least_request_experimental
	_ "google.golang.org/grpc/balancer/roundrobin"   // round_robin

	"github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/fakecc"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// readyPicker builds policy name over n ready endpoints and returns its
// picker.
func readyPicker(b *testing.B, name string, n int) (gbalancer.Picker, func()) {
	insts := make([]registry.Instance, n)
	for i := range insts {
		insts[i] = registry.Instance{ID: fmt.Sprint(i), Service: "s", Address: fmt.Sprintf("10.0.%d.%d:80", i>>8, i&255)}
	}
	h, err := fakecc.Build(name, "")
	if err != nil {
		b.Fatal(err)
	}
	if err := h.UpdateReady(instance.Endpoints(insts)); err != nil {
		b.Fatal(err)
	}
	p, _ := h.CC.Picker()
	return p, h.Close
}

var info = gbalancer.PickInfo{FullMethodName: "/hello.HelloService/SayHello", Ctx: context.Background()}

// picks makes k picks (and Dones) with p, on one goroutine or on
// GOMAXPROCS of them, and returns how long they took.
func picks(b *testing.B, p gbalancer.Picker, k int, parallel bool) time.Duration {
	one := func(k int) {
		for range k {
			r, err := p.Pick(info)
			if err != nil {
				b.Error(err)
				return
			}
			if r.Done != nil {
				r.Done(gbalancer.DoneInfo{})
			}
		}
	}
	start := time.Now()
	if !parallel {
		one(k)
		return time.Since(start)
	}
	g := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() { one(max(k/g, 1)) })
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkPickVersus measures Pick+Done against grpc's round_robin in
// the same run, in 16 slices alternating the two pickers, so that the
// ratio (x_round_robin: the policy's time over round_robin's for as many
// picks) compares the same moments of a shared machine. least_request_
// experimental, grpc's P2C by outstanding requests, is measured the same
// way. ns/op counts a pick of each.
func BenchmarkPickVersus(b *testing.B) {
	for _, n := range []int{10, 1000} {
		base, closeBase := readyPicker(b, "round_robin", n)
		for _, name := range []string{p2c.Name, "least_request_experimental"} {
			pol, closePol := readyPicker(b, name, n)
			for _, mode := range []string{"serial", "parallel"} {
				b.Run(fmt.Sprintf("n=%d/%s/%s", n, name, mode), func(b *testing.B) {
					b.ReportAllocs()
					const slices = 16
					per := max(b.N/slices, 1)
					var tPol, tBase time.Duration
					for done, i := 0, 0; done < b.N; i++ {
						k := min(per, b.N-done)
						if i%2 == 0 {
							tPol += picks(b, pol, k, mode == "parallel")
							tBase += picks(b, base, k, mode == "parallel")
						} else {
							tBase += picks(b, base, k, mode == "parallel")
							tPol += picks(b, pol, k, mode == "parallel")
						}
						done += k
					}
					b.ReportMetric(float64(tPol)/float64(tBase), "x_round_robin")
					b.ReportMetric(float64(tPol)/float64(b.N), "ns/pick")
				})
			}
			closePol()
		}
		closeBase()
	}
}
