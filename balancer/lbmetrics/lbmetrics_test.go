package lbmetrics_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	_ "github.com/wayfinder-rpc/wayfinder/balancer/custom"
	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	"github.com/wayfinder-rpc/wayfinder/balancer/lbmetrics"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/outlier"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/zone"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/lbtest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const target = "wayfinder:///" + lbtest.Service

// point is one data point: its metric, attributes and value.
type point struct {
	name  string
	attrs map[string]string
	value int64
}

func collect(t *testing.T, r *sdkmetric.ManualReader) []point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect() = %v", err)
	}
	var out []point
	add := func(name string, dps []metricdata.DataPoint[int64]) {
		for _, dp := range dps {
			attrs := map[string]string{}
			for _, kv := range dp.Attributes.ToSlice() {
				attrs[string(kv.Key)] = kv.Value.String()
			}
			out = append(out, point{name, attrs, dp.Value})
		}
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				add(m.Name, d.DataPoints)
			case metricdata.Sum[int64]:
				add(m.Name, d.DataPoints)
			}
		}
	}
	return out
}

// find returns the points of name whose attributes include match.
func find(ps []point, name string, match map[string]string) []point {
	var out []point
next:
	for _, p := range ps {
		if p.name != name {
			continue
		}
		for k, v := range match {
			if p.attrs[k] != v {
				continue next
			}
		}
		out = append(out, p)
	}
	return out
}

func newReader(t *testing.T, opts ...lbmetrics.Option) *sdkmetric.ManualReader {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	stop, err := lbmetrics.Register(mp, opts...)
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop() = %v", err)
		}
		if inspect.CountingPicks() {
			t.Error("pick counting still on after stop")
		}
	})
	return reader
}

// TestPicksPerEndpoint: with endpoint labels, each endpoint's pick count
// rises by exactly the calls it served, under every kind of policy; a
// policy nested in outlier ejection or zone-aware does not count the
// same calls again.
func TestPicksPerEndpoint(t *testing.T) {
	for _, tc := range []struct{ lb, policy, nested string }{
		{`{"wayfinder_weighted_round_robin":{}}`, "wrr", ""},
		{`{"wayfinder_p2c_ewma":{}}`, "p2c", ""},
		{`{"wayfinder_outlier_ejection":{}}`, "outlier", ""}, // round_robin child
		{`{"wayfinder_outlier_ejection":{"child":[{"wayfinder_p2c_ewma":{}}]}}`, "outlier", "p2c"},
		{`{"wayfinder_zone_aware":{"child":[{"wayfinder_weighted_round_robin":{}}]}}`, "zone", "wrr"},
	} {
		t.Run(tc.policy+"/"+tc.nested, func(t *testing.T) {
			reader := newReader(t, lbmetrics.WithEndpointLabels())
			env := lbtest.NewEnv(t)
			bs := lbtest.StartBackends(t, 3)
			for _, b := range bs {
				env.Register(lbtest.Instance(b))
			}
			_, client := env.Dial(tc.lb)
			lbtest.WaitServing(t, client, bs...)

			picks := func() map[string]int64 {
				out := map[string]int64{}
				for _, p := range find(collect(t, reader), lbmetrics.MetricPicks, map[string]string{lbmetrics.AttrTarget: target}) {
					if p.attrs[lbmetrics.AttrPolicy] != tc.policy {
						t.Fatalf("%s has a point for policy %q, want only %q: %+v", lbmetrics.MetricPicks, p.attrs[lbmetrics.AttrPolicy], tc.policy, p)
					}
					out[p.attrs[lbmetrics.AttrEndpoint]] += p.value
				}
				return out
			}
			before := picks()
			calls := make([]int64, len(bs))
			for i, b := range bs {
				calls[i] = b.Calls.Load()
			}
			counts := lbtest.Counts(context.Background(), client, 90, 3)
			if e := lbtest.Errors(counts); e > 0 {
				t.Fatalf("%d calls failed: %v", e, counts)
			}
			after := picks()
			for i, b := range bs {
				served := b.Calls.Load() - calls[i]
				if got := after[b.Addr] - before[b.Addr]; got != served {
					t.Errorf("%s{%s=%s} rose by %d, want %d (calls served)", lbmetrics.MetricPicks, lbmetrics.AttrEndpoint, b.Addr, got, served)
				}
			}
			if len(after) != len(bs) {
				t.Errorf("%s has %d endpoint series, want %d: %v", lbmetrics.MetricPicks, len(after), len(bs), after)
			}
		})
	}
}

// TestPicksPerTarget: without endpoint labels there is one series per
// target and policy, equal to the calls made, and it does not fall when
// an endpoint goes away.
func TestPicksPerTarget(t *testing.T) {
	reader := newReader(t, lbmetrics.WithPickCounts())
	env := lbtest.NewEnv(t)
	bs := lbtest.StartBackends(t, 3)
	for _, b := range bs {
		env.Register(lbtest.Instance(b))
	}
	_, client := env.Dial(`{"wayfinder_weighted_round_robin":{}}`)
	lbtest.WaitServing(t, client, bs...)
	total := func() int64 {
		ps := find(collect(t, reader), lbmetrics.MetricPicks, map[string]string{lbmetrics.AttrTarget: target})
		if len(ps) != 1 || ps[0].attrs[lbmetrics.AttrPolicy] != "wrr" || ps[0].attrs[lbmetrics.AttrEndpoint] != "" {
			t.Fatalf("%s points = %+v, want one for policy wrr without endpoint", lbmetrics.MetricPicks, ps)
		}
		return ps[0].value
	}
	served := func() int64 {
		n := int64(0)
		for _, b := range bs {
			n += b.Calls.Load()
		}
		return n
	}
	before, calls := total(), served()
	lbtest.Counts(context.Background(), client, 60, 2)
	if got, want := total()-before, served()-calls; got != want {
		t.Fatalf("%s rose by %d, want %d", lbmetrics.MetricPicks, got, want)
	}
	before = total()
	env.Deregister(lbtest.Instance(bs[0]))
	lbtest.WaitServing(t, client, bs[1:]...)
	if got := total(); got < before {
		t.Fatalf("%s fell from %d to %d when an endpoint was removed", lbmetrics.MetricPicks, before, got)
	}
}

// TestNoPicksByDefault: without WithPickCounts nothing is counted, but
// the endpoints gauge is there.
func TestNoPicksByDefault(t *testing.T) {
	reader := newReader(t)
	env := lbtest.NewEnv(t)
	bs := lbtest.StartBackends(t, 2)
	for _, b := range bs {
		env.Register(lbtest.Instance(b))
	}
	_, client := env.Dial(`{"wayfinder_outlier_ejection":{"child":[{"wayfinder_p2c_ewma":{}}]}}`)
	lbtest.WaitServing(t, client, bs...)
	lbtest.Counts(context.Background(), client, 20, 2)
	ps := collect(t, reader)
	if got := find(ps, lbmetrics.MetricPicks, nil); len(got) != 0 {
		t.Fatalf("%s points = %+v without WithPickCounts, want none", lbmetrics.MetricPicks, got)
	}
	for _, b := range inspect.Balancers() {
		if b.CountsPicks || b.Picks != 0 {
			t.Fatalf("inspect.Balancers() has %+v counting picks, want none", b)
		}
	}
	for _, policy := range []string{"outlier", "p2c"} {
		got := find(ps, lbmetrics.MetricEndpoints, map[string]string{lbmetrics.AttrTarget: target, lbmetrics.AttrPolicy: policy, lbmetrics.AttrState: "READY"})
		if len(got) != 1 || got[0].value != 2 {
			t.Errorf("%s{policy=%s,state=READY} = %+v, want one point of 2", lbmetrics.MetricEndpoints, policy, got)
		}
	}
}

// TestEjections: a failing backend is ejected, counted once in
// wayfinder.lb.ejections and shown by wayfinder.lb.ejected; the gauges
// go when the ClientConn closes.
func TestEjections(t *testing.T) {
	reader := newReader(t)
	env := lbtest.NewEnv(t)
	bs := lbtest.StartBackends(t, 4)
	for _, b := range bs {
		env.Register(lbtest.Instance(b))
	}
	cc, client := env.Dial(`{"wayfinder_outlier_ejection":{"consecutiveFailures":3,"baseEjectionTime":"1h","maxEjectionPercent":25}}`)
	lbtest.WaitServing(t, client, bs...)
	match := map[string]string{lbmetrics.AttrTarget: target, lbmetrics.AttrPolicy: "outlier"}
	value := func(ps []point, name string) int64 {
		got := find(ps, name, match)
		if len(got) != 1 {
			t.Fatalf("%s%v points = %+v, want 1", name, match, got)
		}
		return got[0].value
	}
	ps := collect(t, reader)
	if n, m := value(ps, lbmetrics.MetricEjections), value(ps, lbmetrics.MetricEjected); n != 0 || m != 0 {
		t.Fatalf("before any failure: ejections = %d, ejected = %d, want 0, 0", n, m)
	}
	bs[2].SetFailing(true)
	wait.For(t, 20*time.Second, "the failing backend to be ejected", func() bool {
		lbtest.Counts(context.Background(), client, 20, 2)
		return value(collect(t, reader), lbmetrics.MetricEjected) == 1
	})
	ps = collect(t, reader)
	if n := value(ps, lbmetrics.MetricEjections); n != 1 {
		t.Fatalf("%s = %d after one ejection, want 1", lbmetrics.MetricEjections, n)
	}
	if got := find(ps, lbmetrics.MetricEndpoints, map[string]string{lbmetrics.AttrTarget: target, lbmetrics.AttrState: "READY"}); len(got) != 1 || got[0].value != 4 {
		t.Fatalf("%s{state=READY} = %+v, want 4: an ejected endpoint stays connected", lbmetrics.MetricEndpoints, got)
	}

	cc.Close()
	wait.For(t, 5*time.Second, "the ClientConn's series to go", func() bool {
		ps := collect(t, reader)
		for _, name := range []string{lbmetrics.MetricEjected, lbmetrics.MetricEndpoints, lbmetrics.MetricEjections} {
			if len(find(ps, name, map[string]string{lbmetrics.AttrTarget: target})) > 0 {
				return false
			}
		}
		return true
	})
}

// TestSharedTarget: two ClientConns with the same target and policy are
// summed into one series, not reported twice.
func TestSharedTarget(t *testing.T) {
	reader := newReader(t)
	env := lbtest.NewEnv(t)
	bs := lbtest.StartBackends(t, 2)
	for _, b := range bs {
		env.Register(lbtest.Instance(b))
	}
	for range 2 {
		_, client := env.Dial(`{"wayfinder_weighted_round_robin":{}}`)
		lbtest.WaitServing(t, client, bs...)
	}
	got := find(collect(t, reader), lbmetrics.MetricEndpoints, map[string]string{lbmetrics.AttrTarget: target})
	if len(got) != 1 || got[0].value != 4 {
		t.Fatalf("%s = %s, want one point of 4", lbmetrics.MetricEndpoints, fmt.Sprint(got))
	}
}
