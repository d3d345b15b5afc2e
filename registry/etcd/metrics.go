package etcd

import (
	"go.opentelemetry.io/otel/metric"

	"github.com/wayfinder-rpc/wayfinder/registry/driver/drivermetrics"
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
//	wayfinder.discovery.field_problems counter optional fields dropped from kept instances
//
// All carry wayfinder.backend="etcd" and nothing else.
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.meter = mp } }

// registerMetrics installs the callback reading LeaseState and Stats; the
// returned function unregisters it.
func (r *Registry) registerMetrics(mp metric.MeterProvider) func() {
	return drivermetrics.Register(mp, "github.com/wayfinder-rpc/wayfinder/registry/etcd", Scheme, []drivermetrics.Spec{
		{Name: "wayfinder.registration.instances", Unit: "{instance}", Desc: "Instances this client keeps registered."},
		{Name: "wayfinder.registration.registered", Unit: "{instance}", Desc: "Instances written under the live lease."},
		{Name: "wayfinder.registration.healthy", Unit: "1", Desc: "1 while every instance is registered, else 0."},
		{Name: "wayfinder.registration.leases", Unit: "{lease}", Desc: "Leases granted: 1 plus lease losses.", Counter: true},
		{Name: "wayfinder.registration.reputs", Unit: "{put}", Desc: "Own keys written again after others deleted them.", Counter: true},
		{Name: "wayfinder.registration.keepalives", Unit: "{response}", Desc: "Lease keepalive responses.", Counter: true},
		{Name: "wayfinder.discovery.relists", Unit: "{list}", Desc: "Full re-reads by watchers after compaction or errors.", Counter: true},
		{Name: "wayfinder.discovery.compactions", Unit: "{watch}", Desc: "Watches ended by ErrCompacted.", Counter: true},
		{Name: "wayfinder.discovery.skipped_values", Unit: "{value}", Desc: "Values under the prefix that did not decode.", Counter: true},
		{Name: "wayfinder.discovery.field_problems", Unit: "{field}", Desc: "Optional fields dropped from kept instances, once per instance and value.", Counter: true},
	}, func() map[string]int64 {
		st, s := r.LeaseState(), r.Stats()
		healthy := int64(0)
		if st.Healthy() {
			healthy = 1
		}
		return map[string]int64{
			"wayfinder.registration.instances":   int64(st.Instances),
			"wayfinder.registration.registered":  int64(st.Registered),
			"wayfinder.registration.healthy":     healthy,
			"wayfinder.registration.leases":      int64(s.LeaseGrants),
			"wayfinder.registration.reputs":      int64(s.RePuts),
			"wayfinder.registration.keepalives":  int64(s.KeepAlives),
			"wayfinder.discovery.relists":        int64(s.Relists),
			"wayfinder.discovery.compactions":    int64(s.Compacted),
			"wayfinder.discovery.skipped_values": int64(s.SkippedValues),
			"wayfinder.discovery.field_problems": int64(s.FieldProblems),
		}
	})
}
