// Package drivermetrics registers a registry backend's observable
// OpenTelemetry instruments from a declarative list, so that each
// backend states only what it measures and how to read it.
//
// It is apart from package driver so that a program using only a
// backend without metrics (registry/memory) does not link OpenTelemetry:
// this package imports OpenTelemetry's API (go.opentelemetry.io/otel and
// its metric package, about twenty packages with the global provider),
// never its SDK.
//
// A backend offers WithMeterProvider(metric.MeterProvider), calls
// Register once when it is opened, and calls the function Register
// returns when it is closed. Metric names follow
// wayfinder.registration.* (what a Registrar keeps registered) and
// wayfinder.discovery.* (what its watches and lookups read), each with
// the single attribute wayfinder.backend=<scheme>.
package drivermetrics

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Spec describes one int64 instrument.
type Spec struct {
	Name, Unit, Desc string
	Counter          bool // an observable counter; else a gauge
}

// Register creates the instruments of specs on mp (OpenTelemetry's global
// provider if nil) under the meter scope, with the single attribute
// wayfinder.backend=backend, and observes them with the values read
// returns by name at each collection. It returns a function that
// unregisters the callback.
func Register(mp metric.MeterProvider, scope, backend string, specs []Spec, read func() map[string]int64) func() {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(scope)
	insts := make([]metric.Int64Observable, 0, len(specs))
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		var (
			inst metric.Int64Observable
			err  error
		)
		if s.Counter {
			inst, err = m.Int64ObservableCounter(s.Name, metric.WithUnit(s.Unit), metric.WithDescription(s.Desc))
		} else {
			inst, err = m.Int64ObservableGauge(s.Name, metric.WithUnit(s.Unit), metric.WithDescription(s.Desc))
		}
		if err != nil {
			continue // only invalid names fail, and these are constants
		}
		insts = append(insts, inst)
		names = append(names, s.Name)
	}
	attrs := metric.WithAttributes(attribute.String("wayfinder.backend", backend))
	observables := make([]metric.Observable, len(insts))
	for i, inst := range insts {
		observables[i] = inst
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		vals := read()
		for i, inst := range insts {
			o.ObserveInt64(inst, vals[names[i]], attrs)
		}
		return nil
	}, observables...)
	if err != nil {
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}
