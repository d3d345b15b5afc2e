package app

import (
	"context"

	"go.opentelemetry.io/otel/metric"
	"go.uber.org/fx"

	"github.com/wayfinder-rpc/wayfinder/balancer/lbmetrics"
)

// MetricsOptionsGroup collects lbmetrics options for MetricsModule, for
// example pick counts:
//
//	fx.Supply(fx.Annotated{Group: "wayfinder.lbmetrics", Target: lbmetrics.WithPickCounts()})
const MetricsOptionsGroup = `group:"wayfinder.lbmetrics"`

// RegisterMetricsParams are RegisterMetrics' dependencies. Provide a
// metric.MeterProvider to the app to have both the load-balancer metrics
// and Clients' discovery metrics recorded through it; without one they
// go to OpenTelemetry's global provider.
type RegisterMetricsParams struct {
	fx.In
	Lifecycle     fx.Lifecycle
	MeterProvider metric.MeterProvider `optional:"true"`
	Options       []lbmetrics.Option   `group:"wayfinder.lbmetrics"`
}

// RegisterMetrics registers the load-balancer metrics (lbmetrics.Register)
// when the app starts and unregisters them when it stops.
func RegisterMetrics(p RegisterMetricsParams) {
	var stop func() error
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) (err error) {
			stop, err = lbmetrics.Register(p.MeterProvider, p.Options...)
			return err
		},
		OnStop: func(context.Context) error { return stop() },
	})
}

// MetricsModule records the load-balancer metrics of every Wayfinder
// policy in the process (wayfinder.lb.*; see package lbmetrics) while
// the app runs. Include it once per process: the metrics describe the
// process's balancers, not one app's.
//
// Its Invoke is the module's whole point: nothing in the app consumes
// the registration, so a Provide would never run.
var MetricsModule = fx.Module("wayfinder.metrics", fx.Invoke(RegisterMetrics))
