package resolver_test

import (
	"math/rand/v2"
	"net/url"
	"slices"
	"testing"
	"time"

	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/polling"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// BenchmarkPropagation measures the time from Register (and Deregister)
// to the first RPC that reaches (and the last that avoids) the new
// instance, through a real ClientConn and real servers. It includes the
// new connection's setup. Compare Watch with the 500 ms polling baseline
// (the seed's, shared with wfbench) in the same run:
//
//	go test -run '^$' -bench Propagation -benchtime 200x ./resolver
func BenchmarkPropagation(b *testing.B) {
	b.Run("backend=memory/watch", func(b *testing.B) {
		reg := memory.New()
		benchPropagation(b, reg, reg, 0)
	})
	b.Run("backend=memory/poll500ms", func(b *testing.B) {
		reg := memory.New()
		benchPropagation(b, reg, polling.New(reg, 500*time.Millisecond), 500*time.Millisecond)
	})
	b.Run("backend=memory/to-UpdateState", benchToUpdateState)
}

// benchToUpdateState measures Wayfinder's share of propagation alone:
// from Register (Deregister) to the resolver's UpdateState with the new
// set, on a ClientConn that only records it, so that no connection,
// balancer or call is in the path.
func benchToUpdateState(b *testing.B) {
	ctx := b.Context()
	reg := memory.New()
	if err := reg.Register(ctx, registry.Instance{ID: "stable", Service: "hello", Address: "127.0.0.1:1"}); err != nil {
		b.Fatal(err)
	}
	cache := resolver.NewCache(resolver.WithLinger(0))
	defer cache.Close()
	u, err := url.Parse("wayfinder:///hello")
	if err != nil {
		b.Fatal(err)
	}
	cc := &recordingCC{sizes: make(chan int, 16)}
	r, err := resolver.NewBuilder(reg, resolver.WithCache(cache)).Build(gresolver.Target{URL: *u}, cc, gresolver.BuildOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	wait := func(n int) {
		for got := <-cc.sizes; got != n; got = <-cc.sizes {
		}
	}
	wait(1)
	in := registry.Instance{ID: "moving", Service: "hello", Address: "127.0.0.1:2"}
	var add, remove []time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := reg.Register(ctx, in); err != nil {
			b.Fatal(err)
		}
		wait(2)
		add = append(add, time.Since(t0))
		t0 = time.Now()
		if err := reg.Deregister(ctx, in); err != nil {
			b.Fatal(err)
		}
		wait(1)
		remove = append(remove, time.Since(t0))
	}
	b.StopTimer()
	report(b, "register", add)
	report(b, "deregister", remove)
}

// recordingCC is a resolver.ClientConn that sends the size of every
// state it is given on sizes.
type recordingCC struct {
	sizes chan int
}

func (c *recordingCC) UpdateState(s gresolver.State) error {
	c.sizes <- len(s.Endpoints)
	return nil
}
func (*recordingCC) ReportError(error)              {}
func (*recordingCC) NewAddress([]gresolver.Address) {}
func (*recordingCC) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{}
}

// benchPropagation makes each change after an untimed random pause of up
// to phase, so that changes fall at random points of a poller's cycle
// rather than in step with it.
func benchPropagation(b *testing.B, reg registry.Registrar, d registry.Discovery, phase time.Duration) {
	stable, moving := testenv.StartHello(b, "stable"), testenv.StartHello(b, "moving")
	ctx := b.Context()
	if err := reg.Register(ctx, registry.Instance{ID: "stable", Service: "hello", Address: stable.Addr}); err != nil {
		b.Fatal(err)
	}
	cache := resolver.NewCache(resolver.WithLinger(0))
	defer cache.Close()
	cc, client := dialB(b, resolver.NewBuilder(d, resolver.WithCache(cache)))
	defer cc.Close()
	in := registry.Instance{ID: "moving", Service: "hello", Address: moving.Addr}
	var add, remove []time.Duration
	until := func(want bool) {
		for {
			resp, err := client.SayHello(ctx, &hellopb.HelloRequest{})
			if err != nil {
				b.Fatalf("SayHello = %v", err)
			}
			if (serverOf(resp.GetMessage()) == "moving") == want {
				return
			}
		}
	}
	// gone reports whether n consecutive calls all avoided "moving".
	gone := func(n int) bool {
		for range n {
			resp, err := client.SayHello(ctx, &hellopb.HelloRequest{})
			if err != nil {
				b.Fatalf("SayHello = %v", err)
			}
			if serverOf(resp.GetMessage()) == "moving" {
				return false
			}
		}
		return true
	}
	until(false)
	b.ResetTimer()
	pause := func() {
		if phase > 0 {
			b.StopTimer()
			time.Sleep(rand.N(phase))
			b.StartTimer()
		}
	}
	for range b.N {
		pause()
		t0 := time.Now()
		if err := reg.Register(ctx, in); err != nil {
			b.Fatal(err)
		}
		until(true)
		add = append(add, time.Since(t0))
		pause()
		t0 = time.Now()
		if err := reg.Deregister(ctx, in); err != nil {
			b.Fatal(err)
		}
		for !gone(4) { // round robin alternates: 4 misses in a row means it is out
		}
		remove = append(remove, time.Since(t0))
	}
	b.StopTimer()
	report(b, "register", add)
	report(b, "deregister", remove)
}

func report(b *testing.B, what string, d []time.Duration) {
	slices.Sort(d)
	q := func(p float64) float64 {
		return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), what+"-p50-ms")
	b.ReportMetric(q(0.99), what+"-p99-ms")
	b.ReportMetric(float64(d[len(d)-1].Microseconds())/1000, what+"-max-ms")
}
