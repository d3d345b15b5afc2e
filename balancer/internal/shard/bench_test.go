package shard_test

import (
	"flag"
	"fmt"
	"syscall"
	"testing"

	_ "google.golang.org/grpc/balancer/roundrobin" // round_robin

	"github.com/wayfinder-rpc/wayfinder/balancer/hash"
	"github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	"github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/fakecc"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// The benchmarks below measure the frame's cost per change against grpc's
// round_robin (endpointsharding over pick_first, as the frame is), in the
// same run. Besides ns/op they report cpu-ns/op, the process's CPU time
// (user and system, every thread: the garbage collector's included) per
// operation, which a machine shared with other work disturbs less than
// the wall clock.
var (
	updateSize = flag.Int("update-size", 5000, "endpoints in BenchmarkUpdate")
	firstSize  = flag.Int("first-size", 2000, "endpoints in BenchmarkFirstPicker")
)

var policies = []string{"round_robin", p2c.Name, wrr.Name, hash.Name}

func instances(n int) []registry.Instance {
	out := make([]registry.Instance, n)
	for i := range out {
		out[i] = registry.Instance{ID: fmt.Sprint(i), Service: "s", Address: fmt.Sprintf("10.%d.%d.%d:80", i>>16, i>>8&255, i&255), Weight: i%3 + 1}
	}
	return out
}

func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// measure runs f b.N times and reports its CPU time per operation.
func measure(b *testing.B, f func(i int)) {
	b.ReportAllocs()
	cpu := cpuTime()
	i := 0
	for b.Loop() {
		f(i)
		i++
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// BenchmarkUpdate is the picker benchmark's: one instance more, then one fewer, in a
// service of -update-size ready endpoints, each operation until the
// picker that includes or excludes it. The endpoints of each update are
// new objects, as a resolver makes them.
func BenchmarkUpdate(b *testing.B) {
	n := *updateSize
	insts := instances(n + 1)
	for _, name := range policies {
		h, err := fakecc.Build(name, "")
		if err != nil {
			b.Fatal(err)
		}
		if err := h.UpdateReady(instance.Endpoints(insts[:n])); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("n=%d/%s", n, name), func(b *testing.B) {
			measure(b, func(i int) {
				m := n + 1 - i&1
				if err := h.UpdateReady(instance.Endpoints(insts[:m])); err != nil {
					b.Fatal(err)
				}
			})
		})
		h.Close()
	}
}

// BenchmarkFirstPicker is the way to the first picker with every one of
// -first-size endpoints: one resolver update, then each endpoint READY in
// turn, each its own update, as over a network.
func BenchmarkFirstPicker(b *testing.B) {
	n := *firstSize
	eps := instance.Endpoints(instances(n))
	for _, name := range policies {
		b.Run(fmt.Sprintf("n=%d/%s", n, name), func(b *testing.B) {
			measure(b, func(int) {
				h, err := fakecc.Build(name, "")
				if err != nil {
					b.Fatal(err)
				}
				if err := h.UpdateReady(eps); err != nil {
					b.Fatal(err)
				}
				h.Close()
			})
		})
	}
}
