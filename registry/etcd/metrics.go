package etcd

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// WithMeterProvider records the Registry's metrics with mp (default:
// OpenTelemetry's global provider, a no-op until one is installed):
//
//	wayfinder.registration.instances   gauge   instances this client keeps registered
//	wayfinder.registration.registered  gauge   of those, written under the live lease
//	wayfinder.registration.healthy     gauge   1 if every instance is registered, else 0
//	wayfinder.registration.leases      counter leases granted (1 + lease losses)
//	wayfinder.registration.reputs      counter own keys written again after deletion by others
//	wayfinder.registration.keepalives  counter keepalive responses
//	wayfinder.discovery.relists        counter full re-reads after compaction or errors
//	wayfinder.discovery.compactions    counter watches ended by ErrCompacted
//	wayfinder.discovery.skipped_values counter values under the prefix that did not decode
//
// All carry wayfinder.backend="etcd" and nothing else.
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.meter = mp } }

// registerMetrics installs callbacks reading State and Stats; the
// returned function unregisters them.
func (r *Registry) registerMetrics(mp metric.MeterProvider) func() {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter("github.com/wayfinder-rpc/wayfinder/registry/etcd")
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, _ := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return g
	}
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, _ := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return c
	}
	instances := gauge("wayfinder.registration.instances", "{instance}", "Instances this client keeps registered.")
	registered := gauge("wayfinder.registration.registered", "{instance}", "Instances written under the live lease.")
	healthy := gauge("wayfinder.registration.healthy", "1", "1 while every instance is registered, else 0.")
	leases := counter("wayfinder.registration.leases", "{lease}", "Leases granted: 1 plus lease losses.")
	reputs := counter("wayfinder.registration.reputs", "{put}", "Own keys written again after others deleted them.")
	keepalives := counter("wayfinder.registration.keepalives", "{response}", "Lease keepalive responses.")
	relists := counter("wayfinder.discovery.relists", "{list}", "Full re-reads by watchers after compaction or errors.")
	compactions := counter("wayfinder.discovery.compactions", "{watch}", "Watches ended by ErrCompacted.")
	skipped := counter("wayfinder.discovery.skipped_values", "{value}", "Values under the prefix that did not decode.")
	attrs := metric.WithAttributes(attribute.String("wayfinder.backend", Scheme))
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st, s := r.State(), r.Stats()
		o.ObserveInt64(instances, int64(st.Instances), attrs)
		o.ObserveInt64(registered, int64(st.Registered), attrs)
		h := int64(0)
		if st.Healthy() {
			h = 1
		}
		o.ObserveInt64(healthy, h, attrs)
		o.ObserveInt64(leases, int64(s.LeaseGrants), attrs)
		o.ObserveInt64(reputs, int64(s.RePuts), attrs)
		o.ObserveInt64(keepalives, int64(s.KeepAlives), attrs)
		o.ObserveInt64(relists, int64(s.Relists), attrs)
		o.ObserveInt64(compactions, int64(s.Compacted), attrs)
		o.ObserveInt64(skipped, int64(s.SkippedValues), attrs)
		return nil
	}, instances, registered, healthy, leases, reputs, keepalives, relists, compactions, skipped)
	if err != nil {
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}
