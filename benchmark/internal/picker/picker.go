package picker

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/metadata"

	"github.com/wayfinder-rpc/wayfinder/balancer/hash"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/fakecc"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/lbtest"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// HashHeader is the outgoing metadata header that carries the hash key
// of every pick and call, for the policies configured to hash a header
// (ring_hash_experimental's requestHashHeader). Every pick and call
// also carries the same key through hash.WithKey.
const HashHeader = "x-bench-key"

// Policy is one policy as the benchmarks build it: Label names it in the
// benchmark's name (Name if empty), Name is its registered name, Config
// its JSON config ("" for defaults).
type Policy struct {
	Label, Name, Config string
}

func (p Policy) label() string {
	if p.Label != "" {
		return p.Label
	}
	return p.Name
}

// lbConfig is the loadBalancingConfig entry of p.
func (p Policy) lbConfig() string {
	cfg := p.Config
	if cfg == "" {
		cfg = "{}"
	}
	return fmt.Sprintf(`{%q:%s}`, p.Name, cfg)
}

// Pair is a Wayfinder policy and what a user would pick instead.
type Pair struct {
	Wayfinder, Alternative Policy
}

func instances(n int) []registry.Instance {
	out := make([]registry.Instance, n)
	for i := range out {
		out[i] = registry.Instance{ID: fmt.Sprint(i), Service: "s", Address: fmt.Sprintf("10.%d.%d.%d:80", i>>16, i>>8&255, i&255), Weight: i%3 + 1}
	}
	return out
}

// keyed returns a context with key as the hash key, both ways.
func keyed(key string) context.Context {
	return metadata.AppendToOutgoingContext(hash.WithKey(context.Background(), key), HashHeader, key)
}

// Pick builds every policy through its registered builder on a fake
// ClientConn with n ready endpoints, for each n in sizes, then measures
// Pick (and Done, where the policy sets one) on one goroutine and on
// GOMAXPROCS of them, as Pick/n=<n>/<label>/{serial,parallel}. A pick
// of round_robin costs a few nanoseconds, so that a ratio of two
// separate runs on a shared machine is mostly noise: each policy is
// measured in slices alternating with round_robin's picker over the same
// endpoints, and x_round_robin is its time over round_robin's for as
// many picks (cost: lower is better), with x_round_robin_ci95.
func Pick(b *testing.B, policies []Policy, sizes []int) {
	keys := make([]gbalancer.PickInfo, 1024)
	for i := range keys {
		keys[i] = gbalancer.PickInfo{FullMethodName: "/hello.HelloService/SayHello", Ctx: keyed(fmt.Sprintf("user-%d", i))}
	}
	for _, n := range sizes {
		// Each size's set-up runs inside its own level, so that a -bench
		// pattern that skips the size (Pick/^n=10$/) skips building it:
		// 1,000 endpoints, connected one by one, take seconds per policy.
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) { pickSize(b, policies, keys, n) })
	}
}

// pickSize is Pick for n endpoints.
func pickSize(b *testing.B, policies []Policy, keys []gbalancer.PickInfo, n int) {
	eps := instance.Endpoints(instances(n))
	// round_robin's picker, alternated with each policy's.
	hb, err := fakecc.Build("round_robin", "")
	if err != nil {
		b.Fatal(err)
	}
	defer hb.Close()
	if err := hb.UpdateReady(eps); err != nil {
		b.Fatal(err)
	}
	base, err := warm(hb, keys)
	if err != nil {
		b.Fatalf("round_robin with %d endpoints: Pick() = %v", n, err)
	}
	for _, pol := range policies {
		h, err := fakecc.Build(pol.Name, pol.Config)
		if err != nil {
			b.Fatal(err)
		}
		if err := h.UpdateReady(eps); err != nil {
			b.Fatal(err)
		}
		p, err := warm(h, keys)
		if err != nil {
			b.Fatalf("%s with %d endpoints: Pick() = %v", pol.label(), n, err)
		}
		for _, parallel := range []bool{false, true} {
			mode := "serial"
			if parallel {
				mode = "parallel"
			}
			b.Run(pol.label()+"/"+mode, func(b *testing.B) {
				b.ReportAllocs()
				tPol, tBase, ratios := alternate(b,
					func(k int) time.Duration { return picks(b, p, keys, k, parallel) },
					func(k int) time.Duration { return picks(b, base, keys, k, parallel) })
				if tBase > 0 {
					reportRatio(b, "x_round_robin", float64(tPol)/float64(tBase), ratios, func(r float64) float64 { return r })
				}
			})
		}
		h.Close()
	}
}

// picks makes k picks (and Dones) with p, on one goroutine or spread
// over GOMAXPROCS of them, and returns how long they took.
func picks(b *testing.B, p gbalancer.Picker, keys []gbalancer.PickInfo, k int, parallel bool) time.Duration {
	start := time.Now()
	if !parallel {
		pickN(b, p, keys, k, 0)
		return time.Since(start)
	}
	g := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range g {
		wg.Go(func() { pickN(b, p, keys, max(k/g, 1), w*k) })
	}
	wg.Wait()
	return time.Since(start)
}

// pickN makes k picks (and Dones) with p, the keys from keys[from].
func pickN(b *testing.B, p gbalancer.Picker, keys []gbalancer.PickInfo, k, from int) {
	for i := range k {
		r, err := p.Pick(keys[(from+i)&1023])
		if err != nil {
			b.Error(err)
			return
		}
		if r.Done != nil {
			r.Done(gbalancer.DoneInfo{})
		}
	}
}

// Update measures what one resolver update costs the client's policy
// when one instance of a service of n changes: for each n in sizes and
// each policy, on a fake ClientConn with n ready endpoints, every
// operation hands the balancer the set with one endpoint more (whose new
// SubConn the fake drives to READY) or, the next time, without it, and
// returns once the balancer has built the picker that includes or
// excludes it: Update/n=<n>/<label>, ns/op, B/op and allocs/op per update.
// Setup builds n endpoints one READY at a time, O(n²): seconds per
// policy at 5,000.
func Update(b *testing.B, policies []Policy, sizes []int) {
	for _, n := range sizes {
		insts := instances(n + 1)
		base, more := instance.Endpoints(insts[:n]), instance.Endpoints(insts)
		for _, pol := range policies {
			h, err := fakecc.Build(pol.Name, pol.Config)
			if err != nil {
				b.Fatal(err)
			}
			if err := h.UpdateReady(base); err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("n=%d/%s", n, pol.label()), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					eps := more
					if i&1 == 1 {
						eps = base
					}
					if err := h.UpdateReady(eps); err != nil {
						b.Fatal(err)
					}
					i++
				}
				b.StopTimer()
				// End on the base set, for the next size's run.
				if i&1 == 1 {
					if err := h.UpdateReady(base); err != nil {
						b.Fatal(err)
					}
				}
			})
			h.Close()
		}
	}
}

// warm returns the picker once every key picks: a policy that connects
// lazily (ring_hash_experimental) asks for a connection at the first
// pick of an idle endpoint and fails it, so warm picks every key, drives
// the SubConns this created to READY, and tries again; a policy that
// updates its picker from a goroutine of its own
// (outlier_detection_experimental) gets a moment to do so. It gives up
// only when the number of keys that pick has not grown for 1,000 rounds
// and 30 s: a fixed deadline (10 s until now) failed ring_hash at 1,000
// endpoints on a loaded machine, where each round's READYs take seconds.
func warm(h *fakecc.Harness, keys []gbalancer.PickInfo) (gbalancer.Picker, error) {
	best, stale, since := -1, 0, time.Now()
	for {
		p, _ := h.CC.Picker()
		var err error
		ok := 0
		for _, k := range keys {
			r, e := p.Pick(k)
			if e != nil {
				err = e
				continue
			}
			ok++
			if r.Done != nil {
				// A call left in flight would make P2C avoid its
				// endpoint for the whole run, computing its decay at
				// every look.
				r.Done(gbalancer.DoneInfo{})
			}
		}
		if err == nil {
			return p, nil
		}
		if ok > best {
			best, stale, since = ok, 0, time.Now()
		} else if stale++; stale >= 1000 && time.Since(since) > 30*time.Second {
			return nil, fmt.Errorf("%w (%d of %d keys pick, no progress in %d rounds)", err, ok, len(keys), stale)
		}
		h.ReadyAll()
		time.Sleep(2 * time.Millisecond)
	}
}

// servers starts 10 backends and returns a dialer of ClientConns to them.
func servers(b *testing.B) func(*testing.B, Policy) hellopb.HelloServiceClient {
	bs := lbtest.StartBackends(b, 10)
	return func(b *testing.B, p Policy) hellopb.HelloServiceClient {
		env := lbtest.NewEnv(b)
		for _, be := range bs {
			env.Register(lbtest.Instance(be))
		}
		_, client := env.Dial(p.lbConfig())
		lbtest.WaitServing(b, client, bs...)
		return client
	}
}

// Throughput makes real unary calls over loopback to 10 servers through
// each policy, 16 in flight, as Throughput/<label>. Throughput over
// loopback on a shared machine drifts by more than the policies differ,
// so each policy is measured in slices alternating with grpc's
// round_robin on the same servers: ns/op is the policy's alone, and
// x_round_robin is its calls per second divided by round_robin's over
// the same interleaved slices. round_robin against itself shows how much
// of a ratio is noise.
func Throughput(b *testing.B, policies []Policy) {
	dial := servers(b)
	base := dial(b, Policy{Name: "round_robin"})
	for _, pol := range policies {
		b.Run(pol.label(), func(b *testing.B) {
			interleave(b, dial(b, pol), base, "x_round_robin")
		})
	}
}

// Versus measures each pair's throughput as Throughput does, the
// Wayfinder policy in slices alternating with its alternative on the
// same servers, as Versus/<wayfinder label>: ns/op is the Wayfinder
// policy's, x_alternative its calls per second divided by the
// alternative's over the interleaved slices.
func Versus(b *testing.B, pairs []Pair) {
	dial := servers(b)
	for _, pr := range pairs {
		b.Run(pr.Wayfinder.label(), func(b *testing.B) {
			interleave(b, dial(b, pr.Wayfinder), dial(b, pr.Alternative), "x_alternative")
		})
	}
}

// slices is how many slices alternate measures: enough that a drift of
// the shared machine lands on both sides, and that the slices' ratios
// give a confidence interval (unit_ci95) to set beside the ratio:
// round_robin against itself shows the same noise.
const slices = 32

// alternate runs b.N operations of pol in slices alternating with as
// many of base (each func runs k and returns how long they took), with
// the timer running for pol's only, and returns the two totals and the
// slices' ratios pol/base. The order alternates too, so that neither
// always runs right after the other's garbage.
func alternate(b *testing.B, pol, base func(k int) time.Duration) (tPol, tBase time.Duration, ratios []float64) {
	per := max(b.N/slices, 1)
	b.ResetTimer()
	for done, i := 0, 0; done < b.N; i++ {
		k := min(per, b.N-done)
		var p, q time.Duration
		if i%2 == 0 {
			p = pol(k)
			b.StopTimer()
			q = base(k)
			b.StartTimer()
		} else {
			b.StopTimer()
			q = base(k)
			b.StartTimer()
			p = pol(k)
		}
		tPol, tBase = tPol+p, tBase+q
		if p > 0 && q > 0 {
			ratios = append(ratios, float64(p)/float64(q))
		}
		done += k
	}
	b.StopTimer()
	return tPol, tBase, ratios
}

// reportRatio reports ratio as unit and, as unit_ci95, the half-width
// of the 95% confidence interval of the mean of the slices' ratios
// (1.96 standard errors), each ratio taken through f, so that it is in
// the unit's direction.
func reportRatio(b *testing.B, unit string, ratio float64, slice []float64, f func(float64) float64) {
	b.ReportMetric(ratio, unit)
	n := len(slice)
	if n < 2 {
		return
	}
	var sum, sq float64
	for _, r := range slice {
		sum += f(r)
	}
	mean := sum / float64(n)
	for _, r := range slice {
		sq += (f(r) - mean) * (f(r) - mean)
	}
	b.ReportMetric(1.96*math.Sqrt(sq/float64(n-1)/float64(n)), unit+"_ci95")
}

// interleave times b.N calls through client in slices alternating with
// as many through base, and reports base's time over client's as unit
// (calls per second over base's: higher is better), with unit_ci95.
func interleave(b *testing.B, client, base hellopb.HelloServiceClient, unit string) {
	tPol, tBase, ratios := alternate(b,
		func(k int) time.Duration { return calls(b, client, k) },
		func(k int) time.Duration { return calls(b, base, k) })
	if tPol > 0 {
		reportRatio(b, unit, float64(tBase)/float64(tPol), ratios, func(r float64) float64 { return 1 / r })
	}
}

// calls makes n calls, 16 in flight, each with its own hash key, and
// returns how long they took.
func calls(b *testing.B, client hellopb.HelloServiceClient, n int) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if _, err := lbtest.Call(keyed(strconv.FormatInt(i, 10)), client); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}
