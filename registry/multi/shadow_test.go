package multi_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/registry/multi"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// gauge reads wayfinder.discovery.shadow_differences from reader, -1 if
// it is not there.
func gauge(t *testing.T, reader *metric.ManualReader) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == "wayfinder.discovery.shadow_differences" && len(g.DataPoints) == 1 {
				return g.DataPoints[0].Value
			}
		}
	}
	return -1
}

// TestShadow: a shadow registry is compared with the read one for the
// watched service, never served, and its outage is not the watch's; the
// gauge counts the differences and falls to 0 once they agree.
func TestShadow(t *testing.T) {
	reader := metric.NewManualReader()
	mp := metric.NewMeterProvider(metric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	old, nw := memory.New(), memory.New()
	r, err := multi.New([]multi.Member{{Name: "mem://old", Registry: old}}, nil,
		multi.WithShadow(multi.Member{Name: "mem://new", Registry: nw}), multi.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := ctxT(t)
	svc := "hello"
	a, b := registrytest.MakeInstance(svc, 1), registrytest.MakeInstance(svc, 2)
	a2 := a.Clone()
	a2.Zone = "z2"
	for _, step := range []struct {
		r    registry.Registrar
		inst registry.Instance
	}{{old, a}, {old, b}, {nw, a2}} {
		if err := step.r.Register(ctx, step.inst); err != nil {
			t.Fatal(err)
		}
	}
	if got := gauge(t, reader); got != 0 {
		t.Errorf("gauge before any watch = %d, want 0", got)
	}
	w, err := r.Watch(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got, err := w.Next(ctx); err != nil || !registrytest.SameIDs(got, a, b) || got[0].Zone != "" {
		t.Fatalf("Next() = %+v, %v; want old's [a b] only", got, err)
	}
	if !wait.Until(10*time.Second, func() bool { return gauge(t, reader) == 2 }) {
		t.Fatalf("gauge = %d, want 2 (a differs, b only in old); differences %+v", gauge(t, reader), r.ShadowDifferences(svc))
	}
	d := r.ShadowDifferences(svc)
	if len(d) != 2 || d[0].Kind != multi.Differs || d[0].Fields[0].Field != "zone" || d[1].Kind != multi.OnlyOld {
		t.Errorf("ShadowDifferences(%q) = %+v; want a's zone and b only in old", svc, d)
	}
	nw.SetOutage(refused)
	ctx2, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if got, err := w.Next(ctx2); err != context.DeadlineExceeded {
		t.Fatalf("Next() in the shadow's outage = %v, %v; want nothing: a shadow is never served", registrytest.IDs(got), err)
	}
	nw.SetOutage(nil)
	if err := nw.Register(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := nw.Register(ctx, b); err != nil {
		t.Fatal(err)
	}
	if !wait.Until(10*time.Second, func() bool { return gauge(t, reader) == 0 }) {
		t.Fatalf("gauge once both agree = %d, want 0; differences %+v", gauge(t, reader), r.ShadowDifferences(svc))
	}
	w.Close()
	if d := r.ShadowDifferences(svc); d != nil {
		t.Errorf("ShadowDifferences(%q) after the watch closed = %+v, want nil", svc, d)
	}
	if err := registry.ValidateURL("multi://?read=mem://a&shadow=mem://b,mem://c"); err != nil {
		t.Errorf("ValidateURL(shadow) = %v, want nil", err)
	}
}
