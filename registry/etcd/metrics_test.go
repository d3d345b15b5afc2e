package etcd_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/cctest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
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
	got := cctest.MetricSums(t, reader)
	if got["wayfinder.registration.instances"] != 2 || got["wayfinder.registration.registered"] != 2 ||
		got["wayfinder.registration.healthy"] != 1 || got["wayfinder.registration.leases"] != 1 {
		t.Fatalf("metrics after two registrations = %v", got)
	}
}
