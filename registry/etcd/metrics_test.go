package etcd_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/wayfinder-rpc/wayfinder/internal/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
)

func TestMetrics(t *testing.T) {
	srv := testenv.StartEtcd(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	r := newRegistry(t, []string{srv.Endpoint()}, etcd.WithMeterProvider(mp))
	svc := svcName(t)
	if err := r.Register(t.Context(), inst(svc, 1)); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(t.Context(), inst(svc, 2)); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] += p.Value
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] += p.Value
				}
			}
		}
	}
	if got["wayfinder.registration.instances"] != 2 || got["wayfinder.registration.registered"] != 2 ||
		got["wayfinder.registration.healthy"] != 1 || got["wayfinder.registration.leases"] != 1 {
		t.Fatalf("metrics after two registrations = %v", got)
	}
}
