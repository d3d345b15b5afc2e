package consul_test

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/cctest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

func TestMetrics(t *testing.T) {
	agent := testenv.StartConsul(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	r := newReg(t, agent.HTTPAddr(), consul.WithMeterProvider(mp))
	svc := registrytest.ServiceName(t)
	a := registrytest.MakeInstance(svc, 1)
	if err := r.Register(ctxT(t, 10*time.Second), a); err != nil {
		t.Fatal(err)
	}
	w := mustWatch(t, r, svc)
	defer w.Close()
	nextUntil(t, w, 10*time.Second, "a", func(in []registry.Instance) bool { return sameIDs(in, a.ID) })
	got := cctest.MetricSums(t, reader)
	if got["wayfinder.registration.instances"] != 1 || got["wayfinder.registration.registered"] != 1 ||
		got["wayfinder.registration.healthy"] != 1 || got["wayfinder.discovery.queries"] < 1 {
		t.Fatalf("metrics = %v", got)
	}
}
