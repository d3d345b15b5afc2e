package lbmetrics_test

import (
	"context"
	"fmt"
	"log"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/example"
	"github.com/wayfinder-rpc/wayfinder/balancer/lbmetrics"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Export the load-balancer metrics with pick counts per target and
// policy through a meter provider, here read by hand.
func ExampleRegister() {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	stop, err := lbmetrics.Register(mp, lbmetrics.WithPickCounts())
	if err != nil {
		log.Fatal(err)
	}
	defer stop()

	// Dial ClientConns with Wayfinder policies; their picks, ejections
	// and endpoint states are recorded from now on.
	_, stopBackends := example.Start("lbmetrics-example", registry.Instance{ID: "a"}, registry.Instance{ID: "b"})
	defer stopBackends()
	// A cache without linger, so that no watch outlives the example;
	// a program would call resolver.NewClient.
	cache := resolver.NewCache(resolver.WithLinger(0))
	defer cache.Close()
	const target = "mem://lbmetrics-example/hello"
	cc, err := cache.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_weighted_round_robin":{}}]}`))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	client := hellopb.NewHelloServiceClient(cc)
	ctx := context.Background()
	example.WaitServing(ctx, client, "a", "b")

	// read returns the metric's value for target, by connectivity state
	// where it has one.
	read := func(name string) map[string]int64 {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			log.Fatal(err)
		}
		out := map[string]int64{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				var dps []metricdata.DataPoint[int64]
				switch d := m.Data.(type) {
				case metricdata.Gauge[int64]:
					dps = d.DataPoints
				case metricdata.Sum[int64]:
					dps = d.DataPoints
				}
				for _, dp := range dps {
					if t, _ := dp.Attributes.Value(attribute.Key(lbmetrics.AttrTarget)); m.Name == name && t.AsString() == target {
						s, _ := dp.Attributes.Value(attribute.Key(lbmetrics.AttrState))
						out[s.AsString()] += dp.Value
					}
				}
			}
		}
		return out
	}
	before := read(lbmetrics.MetricPicks)[""]
	example.Counts(ctx, client, 10)
	fmt.Println("picks:", read(lbmetrics.MetricPicks)[""]-before)
	fmt.Println("endpoints:", read(lbmetrics.MetricEndpoints))
	// Output:
	// picks: 10
	// endpoints: map[READY:2]
}
