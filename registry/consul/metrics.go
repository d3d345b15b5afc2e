package consul

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// counters are background events, read by the metrics callback.
type counters struct {
	queries     atomic.Int64 // blocking-query round trips
	queryErrors atomic.Int64 // of those, failed
	indexResets atomic.Int64 // X-Consul-Index went backwards: reset to 0
}

// WithMeterProvider records the Registry's metrics with mp (default:
// OpenTelemetry's global provider, a no-op until one is installed):
//
//	wayfinder.registration.instances       gauge   instances this client keeps registered
//	wayfinder.registration.registered      gauge   of those, registered with the agent now
//	wayfinder.registration.healthy         gauge   of those, reported healthy at the last heartbeat
//	wayfinder.registration.reregistrations counter registrations after the first (agent restarts, lost services)
//	wayfinder.discovery.queries            counter blocking-query round trips
//	wayfinder.discovery.query_errors       counter failed blocking queries
//	wayfinder.discovery.index_resets       counter X-Consul-Index going backwards
//
// All carry wayfinder.backend="consul" and nothing else.
func WithMeterProvider(mp metric.MeterProvider) Option { return func(c *config) { c.meter = mp } }

// registerMetrics installs the callback; the returned function removes it.
func (r *Registry) registerMetrics(mp metric.MeterProvider) func() {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter("github.com/wayfinder-rpc/wayfinder/registry/consul")
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, _ := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return g
	}
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, _ := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return c
	}
	instances := gauge("wayfinder.registration.instances", "{instance}", "Instances this client keeps registered.")
	registered := gauge("wayfinder.registration.registered", "{instance}", "Instances registered with the agent now.")
	healthy := gauge("wayfinder.registration.healthy", "{instance}", "Instances reported healthy at the last heartbeat.")
	rereg := counter("wayfinder.registration.reregistrations", "{registration}", "Registrations after the first: agent restarts, lost services.")
	queries := counter("wayfinder.discovery.queries", "{query}", "Blocking-query round trips.")
	qerrs := counter("wayfinder.discovery.query_errors", "{query}", "Failed blocking queries.")
	resets := counter("wayfinder.discovery.index_resets", "{reset}", "Times X-Consul-Index went backwards and was reset to 0.")
	attrs := metric.WithAttributes(attribute.String("wayfinder.backend", Scheme))
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		var n, reg, ok, re int64
		r.mu.Lock()
		gs := make([]*registration, 0, len(r.regs))
		for _, g := range r.regs {
			gs = append(gs, g)
		}
		r.mu.Unlock()
		for _, g := range gs {
			st := g.snapshot()
			n++
			if st.State == StateRegistered {
				reg++
			}
			if st.Healthy {
				ok++
			}
			if st.Registrations > 1 {
				re += int64(st.Registrations - 1)
			}
		}
		o.ObserveInt64(instances, n, attrs)
		o.ObserveInt64(registered, reg, attrs)
		o.ObserveInt64(healthy, ok, attrs)
		o.ObserveInt64(rereg, re, attrs)
		o.ObserveInt64(queries, r.counters.queries.Load(), attrs)
		o.ObserveInt64(qerrs, r.counters.queryErrors.Load(), attrs)
		o.ObserveInt64(resets, r.counters.indexResets.Load(), attrs)
		return nil
	}, instances, registered, healthy, rereg, queries, qerrs, resets)
	if err != nil {
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}
