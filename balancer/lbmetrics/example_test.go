package lbmetrics_test

import (
	"log"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/wayfinder-rpc/wayfinder/balancer/lbmetrics"
)

// Export the load-balancer metrics with pick counts per target and
// policy through a meter provider (here one without an exporter).
func ExampleRegister() {
	mp := sdkmetric.NewMeterProvider()
	stop, err := lbmetrics.Register(mp, lbmetrics.WithPickCounts())
	if err != nil {
		log.Fatal(err)
	}
	defer stop()
	// Dial ClientConns with Wayfinder policies; their picks, ejections
	// and endpoint states are recorded from now on.
}
