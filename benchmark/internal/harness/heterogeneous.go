package harness

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "google.golang.org/grpc/balancer/weightedroundrobin" // weighted_round_robin

	_ "github.com/wayfinder-rpc/wayfinder/balancer/p2c" // wayfinder_p2c_ewma
	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr" // wayfinder_weighted_round_robin
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// The heterogeneous scenario: servers of unequal capacity that report
// their load (ORCA), one of which degrades mid-run. Capacity is a number
// of worker slots, each holding a call for the service time (a timer, not
// CPU, so that the machine's load does not set it); a call waits for a
// free slot, up to its deadline. Each server reports, every
// heteroReportEvery, its busy fraction over that window as application
// utilisation and its completed calls per second as rps_fractional, as
// a real server would.
const (
	heteroFull          = 4                      // slots of a full server
	heteroHalf          = 2                      // slots of a half-capacity one
	heteroServers       = 6                      // the first two are half-capacity
	heteroService       = 100 * time.Millisecond // service time per call
	heteroDegrade       = 4                      // the degraded server's service time multiplier
	heteroDeadline      = time.Second
	heteroWarmup        = 5 * time.Second // blackout (2 s) plus a few weight updates
	heteroReportEvery   = 250 * time.Millisecond
	heteroReportWindows = 4 // reports cover the last second
	heteroBlackout      = `"2s"`
)

// heteroCapacity is the servers' total capacity in calls per second,
// before the degradation.
func heteroCapacity() float64 {
	slots := heteroHalf*2 + heteroFull*(heteroServers-2)
	return float64(slots) / heteroService.Seconds()
}

// HeteroPolicy is one ClientConn of the heterogeneous scenario.
type HeteroPolicy struct{ Variant, Name, Config, Why string }

// heteroPolicies run at the same time, each on servers of its own.
var heteroPolicies = []HeteroPolicy{
	{"round_robin", "round_robin", "{}", ""},
	{"wayfinder_weighted_round_robin_orca", "wayfinder_weighted_round_robin", `{"loadReports":{"blackoutPeriod":` + heteroBlackout + `}}`, "per-call reports; blackout shortened to fit the run, as for weighted_round_robin"},
	{"wayfinder_p2c_ewma_orca", "wayfinder_p2c_ewma", `{"loadReports":{"blackoutPeriod":` + heteroBlackout + `}}`, "per-call reports; blackout shortened to fit the run"},
	{"wayfinder_p2c_ewma", "wayfinder_p2c_ewma", "{}", "no load reports: latency and calls in flight only"},
	{"weighted_round_robin", "weighted_round_robin", `{"blackoutPeriod":` + heteroBlackout + `}`, "grpc-go's A58 policy, per-call reports (enableOobLoadReport false: the servers' out-of-band minimum is 30 s)"},
}

// heteroServer is one server of the scenario.
type heteroServer struct {
	hellopb.UnimplementedHelloServiceServer
	name    string
	slots   chan struct{}
	service atomic.Int64 // ns
	arrived atomic.Int64 // calls received
	busy    atomic.Int64 // slot-ns of calls finished since the last report
	done    atomic.Int64 // calls finished since the last report
	s       *server.Server

	// The reporter's: the last heteroReportWindows windows' figures.
	ring [heteroReportWindows]struct{ busy, done int64 }
	next int
}

func (h *heteroServer) SayHello(ctx context.Context, req *hellopb.HelloRequest) (*hellopb.HelloResponse, error) {
	h.arrived.Add(1)
	select {
	case h.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	d := time.Duration(h.service.Load())
	t := time.NewTimer(d)
	t0 := time.Now()
	var err error
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		err = ctx.Err()
	}
	h.busy.Add(int64(time.Since(t0)))
	h.done.Add(1)
	<-h.slots
	if err != nil {
		return nil, err
	}
	return &hellopb.HelloResponse{Message: "hello " + req.GetName() + " from " + h.name}, nil
}

// report sets the server's utilisation and rate over the last
// heteroReportWindows windows of length window, as a real server would
// over a sliding second; with no call finished in that time it keeps the
// last figures.
func (h *heteroServer) report(window time.Duration) {
	h.ring[h.next].busy, h.ring[h.next].done = h.busy.Swap(0), h.done.Swap(0)
	h.next = (h.next + 1) % len(h.ring)
	var busy, done int64
	for _, b := range h.ring {
		busy += b.busy
		done += b.done
	}
	if done == 0 {
		return
	}
	span := window * heteroReportWindows
	u := float64(busy) / (float64(cap(h.slots)) * float64(span))
	rec := h.s.LoadReports()
	rec.SetApplicationUtilization(min(u, 1))
	rec.SetQPS(float64(done) / span.Seconds())
}

// heterogeneous runs heteroPolicies at the same time, each on a set of
// heteroServers servers of its own built WithLoadReports (so that the
// machine's load, which varies, weighs on all alike): cfg.HeteroRate
// calls per second each (open loop: each call at its time, whatever the
// others) for heteroWarmup, then two measured phases of cfg.HeteroPhase,
// the second with server h2 of every set (a full one) degraded to a
// quarter of its capacity.
func heterogeneous(tb testing.TB, be *Backend, cfg Config) ([]Sample, error) {
	ctx := tb.Context()
	reg := be.Open(tb, nil)
	sets := make([][]*heteroServer, len(heteroPolicies))
	svcs := make([]string, len(heteroPolicies))
	for k := range heteroPolicies {
		svcs[k] = uniqueService("hetero")
		for i := range heteroServers {
			slots := heteroFull
			if i < 2 {
				slots = heteroHalf
			}
			h := &heteroServer{name: fmt.Sprintf("h%d", i), slots: make(chan struct{}, slots)}
			h.service.Store(int64(heteroService))
			s, err := server.New(reg, svcs[k], server.WithID(h.name), server.WithLoadReports(),
				server.WithDrainTimeout(time.Second), server.WithGracefulTimeout(time.Second))
			if err != nil {
				return nil, err
			}
			h.s = s
			hellopb.RegisterHelloServiceServer(s.GRPC(), h)
			if err := s.Start(ctx); err != nil {
				return nil, err
			}
			tb.Cleanup(func() { s.Stop(context.Background()) })
			sets[k] = append(sets[k], h)
		}
	}
	// The servers' reports, every heteroReportEvery until the end.
	rctx, stopReports := context.WithCancel(ctx)
	var reporters sync.WaitGroup
	reporters.Go(func() {
		t := time.NewTicker(heteroReportEvery)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				for _, set := range sets {
					for _, h := range set {
						h.report(heteroReportEvery)
					}
				}
			}
		}
	})
	defer func() {
		stopReports()
		reporters.Wait()
	}()

	clients := make([]hellopb.HelloServiceClient, len(heteroPolicies))
	for k, p := range heteroPolicies {
		_, clients[k] = dialConfig(tb, be.Open(tb, nil), newCache(tb), svcs[k], fmt.Sprintf(`{%q:%s}`, p.Name, p.Config))
		var names []string
		for _, h := range sets[k] {
			names = append(names, h.name)
		}
		if err := waitServing(ctx, clients[k], 30*time.Second, names...); err != nil {
			return nil, fmt.Errorf("%s: %w", p.Variant, err)
		}
	}
	start := time.Now()
	out := make([]Sample, len(heteroPolicies))
	var runs sync.WaitGroup
	for k, p := range heteroPolicies {
		runs.Go(func() {
			calls, arrived := heteroRun(ctx, cfg, start, clients[k], sets[k])
			out[k] = heteroSample(p, calls)
			// Where the policy sent the measured calls, answered or not:
			// the routing, whatever the machine's delays.
			var half, all int64
			for i, n := range arrived {
				all += n
				if i < 2 {
					half += n
				}
			}
			out[k].Metrics["half_sent_pct"] = 100 * float64(half) / float64(max(all, 1))
		})
	}
	runs.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// heteroCall is one measured call.
type heteroCall struct {
	lat      time.Duration
	failed   bool
	server   string
	degraded bool // in the second phase
}

// heteroRun sends one policy's calls from start, degrading servers[2]
// for the second measured phase, and returns the measured calls and
// the calls each server received while they were sent.
func heteroRun(ctx context.Context, cfg Config, start time.Time, client hellopb.HelloServiceClient, servers []*heteroServer) ([]heteroCall, []int64) {
	var (
		mu      sync.Mutex
		calls   []heteroCall
		phase   atomic.Int32 // 0 warm-up, 1 measured, 2 measured and degraded
		wg      sync.WaitGroup
		arrived = make([]int64, len(servers))
	)
	warmEnd := start.Add(heteroWarmup)
	degradeAt := warmEnd.Add(cfg.HeteroPhase)
	end := degradeAt.Add(cfg.HeteroPhase)
	const tick = 5 * time.Millisecond
	interval := time.Duration(float64(time.Second) / cfg.HeteroRate)
	next := start
	for now := time.Now(); now.Before(end) && ctx.Err() == nil; now = time.Now() {
		if now.After(warmEnd) && phase.Load() < 1 {
			phase.Store(1)
			for i, h := range servers {
				arrived[i] = -h.arrived.Load()
			}
		}
		if now.After(degradeAt) && phase.Load() < 2 {
			servers[2].service.Store(int64(heteroService * heteroDegrade))
			phase.Store(2)
		}
		for ; !next.After(now); next = next.Add(interval) { // open loop: every call due by now
			ph := phase.Load()
			wg.Go(func() {
				t0 := time.Now()
				name, err := call(ctx, client, heteroDeadline)
				d := time.Since(t0)
				if ph == 0 {
					return
				}
				if err != nil {
					d = max(d, heteroDeadline)
				}
				mu.Lock()
				calls = append(calls, heteroCall{lat: d, failed: err != nil, server: name, degraded: ph == 2})
				mu.Unlock()
			})
		}
		sleep(ctx, tick)
	}
	for i, h := range servers { // the calls sent in the measured phases, before those still in flight end
		arrived[i] += h.arrived.Load()
	}
	wg.Wait()
	return calls, arrived
}

// heteroSample sums up one policy's calls.
func heteroSample(p HeteroPolicy, calls []heteroCall) Sample {
	var all, deg []time.Duration
	var failed, failedDeg, toHalf, toDegraded, ok, okDeg int
	for _, c := range calls {
		all = append(all, c.lat)
		if c.failed {
			failed++
		} else {
			ok++
			if c.server == "h0" || c.server == "h1" {
				toHalf++
			}
		}
		if c.degraded {
			deg = append(deg, c.lat)
			if c.failed {
				failedDeg++
			} else {
				okDeg++
				if c.server == "h2" {
					toDegraded++
				}
			}
		}
	}
	m := map[string]float64{
		"calls":                float64(len(all)),
		"failed":               float64(failed),
		"success_pct":          100 * float64(len(all)-failed) / float64(max(len(all), 1)),
		"p50_ms":               ms(percentile(all, 0.50)),
		"p99_ms":               ms(percentile(all, 0.99)),
		"degraded_success_pct": 100 * float64(len(deg)-failedDeg) / float64(max(len(deg), 1)),
		"degraded_p50_ms":      ms(percentile(deg, 0.50)),
		"degraded_p99_ms":      ms(percentile(deg, 0.99)),
		"half_share_pct":       100 * float64(toHalf) / float64(max(ok, 1)),
		"degraded_share_pct":   100 * float64(toDegraded) / float64(max(okDeg, 1)),
	}
	notes := []string{fmt.Sprintf("`{%q:%s}`", p.Name, p.Config)}
	if p.Why != "" {
		notes = append(notes, p.Why)
	}
	return Sample{Variant: p.Variant, Metrics: m, Notes: notes}
}

// heteroBlended are the Wayfinder policies blending load reports.
var heteroBlended = []string{"wayfinder_weighted_round_robin_orca", "wayfinder_p2c_ewma_orca"}

// heterogeneousSection renders section 11, if the run measured it.
func (r *Report) heterogeneousSection(w func(string, ...any), img func(name, alt string)) {
	rs := r.variants("heterogeneous", "memory")
	if len(rs) == 0 {
		return
	}
	c := r.Config
	w("## 11. Heterogeneous backends (load reports)\n\n")
	w("%d servers built with `server.WithLoadReports()`, each with worker slots that hold a call for %v (a timer, so that the machine's load does not set the capacity): %d with %d slots (%s calls/s each) and two with %d (half the capacity); a call waits for a free slot up to its %v deadline. Every %v each server sets its busy fraction over the last second as application utilisation and its completed calls per second over it as `rps_fractional`, which every call's trailer carries. Every policy runs at the same time, on a set of such servers of its own (so that the machine's load, which varies, weighs on all alike), with %s calls per second, open loop (%s %% of the set's capacity of %s calls/s): %v of warm-up, then %v measured, then server h2 (a full one) of every set degrades to a quarter of its capacity (service time ×%d) for another %v, measured. A failed call counts at the deadline. *Half-capacity share*: the calls h0 and h1 answered, of all answered (capacity share: %s %%; round robin gives %s %%); *degraded share*: h2's share after it degraded (capacity share then %s %%).\n\n",
		heteroServers, heteroService, heteroServers-2, heteroFull, fmtNum(heteroFull/heteroService.Seconds()), heteroHalf, heteroDeadline, heteroReportEvery,
		fmtNum(c.HeteroRate), fmtNum(100*c.HeteroRate/heteroCapacity()), fmtNum(heteroCapacity()), heteroWarmup, c.HeteroPhase, heteroDegrade, c.HeteroPhase,
		fmtNum(100*2*heteroHalf/(heteroCapacity()*heteroService.Seconds())), fmtNum(100*2.0/heteroServers),
		fmtNum(100*float64(heteroFull)/heteroDegrade/(heteroCapacity()*heteroService.Seconds()-heteroFull+float64(heteroFull)/heteroDegrade)))
	img("heterogeneous.svg", "heterogeneous backends chart")
	w("| policy | calls | success | p50 / p99 (ms) | after h2 degraded: success, p50 / p99 (ms) | half-capacity share | degraded share |\n|---|---|---|---|---|---|---|\n")
	for _, res := range rs {
		m := res.Metrics
		w("| %s | %s | %.3f %% | %s / %s | %.3f %%, %s / %s | %s %% | %s %% |\n", res.Variant, fmtNum(m["calls"]), m["success_pct"], fmtNum(m["p50_ms"]), fmtNum(m["p99_ms"]),
			m["degraded_success_pct"], fmtNum(m["degraded_p50_ms"]), fmtNum(m["degraded_p99_ms"]), fmtNum(m["half_share_pct"]), fmtNum(m["degraded_share_pct"]))
	}
	w("\nEach policy's loadBalancingConfig, and why so:\n\n")
	for _, res := range rs {
		w("- %s: %s\n", res.Variant, strings.Join(res.Notes, "; "))
	}
	w("\n")
}

// heterogeneousSummary adds the p99 of the best blended policy to the
// summary, against round_robin and weighted_round_robin.
func (r *Report) heterogeneousSummary(w func(string, ...any)) {
	best, bestP99 := "", 0.0
	for _, v := range heteroBlended {
		if x, ok := r.get("heterogeneous", "memory", v, "p99_ms"); ok && (best == "" || x < bestP99) {
			best, bestP99 = v, x
		}
	}
	if best == "" {
		return
	}
	succ, _ := r.get("heterogeneous", "memory", best, "success_pct")
	rr, _ := r.get("heterogeneous", "memory", "round_robin", "p99_ms")
	rrSucc, _ := r.get("heterogeneous", "memory", "round_robin", "success_pct")
	alt := "—"
	if a, ok := r.get("heterogeneous", "memory", "weighted_round_robin", "p99_ms"); ok {
		as, _ := r.get("heterogeneous", "memory", "weighted_round_robin", "success_pct")
		alt = fmt.Sprintf("%s ms, %.3f %% (weighted_round_robin, ORCA; %s× Wayfinder's p99)", fmtNum(a), as, fmtNum(a/bestP99))
	}
	w("| p99 and success, heterogeneous backends, one degrading (section 11) | memory | %s ms, %.3f %% (%s) | %s ms, %.3f %% (round_robin) | %s× | %s | none set | |\n",
		fmtNum(bestP99), succ, best, fmtNum(rr), rrSucc, fmtNum(bestP99/rr), alt)
}

// heterogeneousChart is the p99 of every policy.
func (r *Report) heterogeneousChart(charts map[string]string) {
	rs := r.variants("heterogeneous", "memory")
	if len(rs) == 0 {
		return
	}
	var g []barGroup
	for _, phase := range []struct{ metric, label string }{{"p99_ms", "whole run"}, {"degraded_p99_ms", "after h2 degraded"}} {
		var bars []bar
		for _, res := range rs {
			x := res.Metrics[phase.metric]
			bars = append(bars, bar{Label: res.Variant, Value: x, Text: fmtNum(x) + " ms"})
		}
		g = append(g, barGroup{Label: phase.label, Bars: bars})
	}
	charts["heterogeneous.svg"] = barChart("Heterogeneous backends, one degrading: p99 latency", "ms, median of runs (log scale; lower is better)", true, 0, g)
}
