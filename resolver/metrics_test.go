package resolver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// collect returns metric name -> sum over data points (gauges and sums).
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] += float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] += float64(p.Value)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					out[m.Name] += p.Value
				}
			}
		}
	}
	return out
}

func TestMetricsAndWatches(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	store := memory.NewStore()
	reg := store.Open()
	cache := newCache(t, resolver.WithMeterProvider(mp))
	b := resolver.NewBuilder(reg, resolver.WithCache(cache))
	cc := newFakeCC()
	r := build(t, b, "wayfinder:///hello", cc)
	defer r.Close()
	for i := range 3 {
		if err := reg.Register(t.Context(), registry.Instance{ID: string(rune('a' + i)), Service: "hello", Address: "127.0.0.1:100" + string(rune('1'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	cc.wait(t, "pushed 3 instances", func(int, int) bool {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		return len(cc.states) > 0 && len(cc.states[len(cc.states)-1].Endpoints) == 3
	})
	m := collect(t, reader)
	if m[resolver.MetricInstances] != 3 || m[resolver.MetricUpdates] < 1 || m[resolver.MetricWatches] != 1 || m[resolver.MetricResolvers] != 1 || m[resolver.MetricStaleness] != 0 {
		t.Fatalf("metrics while healthy = %v", m)
	}
	store.SetOutage(errors.New("down"))
	cc.wait(t, "reported the outage", func(_, e int) bool { return e > 0 })
	time.Sleep(20 * time.Millisecond)
	m = collect(t, reader)
	if m[resolver.MetricErrors] < 1 || m[resolver.MetricStaleness] <= 0 || m[resolver.MetricInstances] != 3 {
		t.Fatalf("metrics during an outage = %v; want errors ≥ 1, staleness > 0, and the 3 instances kept", m)
	}
	ws := cache.Watches()
	if len(ws) != 1 || ws[0].Service != "hello" || ws[0].Fresh || ws[0].LastError == "" || len(ws[0].Instances) != 3 {
		t.Fatalf("Watches() during an outage = %+v", ws)
	}
}
