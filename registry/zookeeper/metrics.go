package zookeeper

import (
	"go.opentelemetry.io/otel/metric"

	"github.com/wayfinder-rpc/wayfinder/registry/driver/drivermetrics"
)

// Metrics, recorded with the MeterProvider given with WithMeterProvider
// (default: OpenTelemetry's global provider, a no-op until one is
// installed):
//
//	wayfinder.registration.instances   gauge   instances this client keeps registered
//	wayfinder.registration.registered  gauge   of those, written under the live session
//	wayfinder.registration.healthy     gauge   1 if every instance is registered, else 0
//	wayfinder.registration.sessions    counter sessions written under (1 + expiries)
//	wayfinder.registration.reputs      counter own nodes written again after deletion by others
//	wayfinder.discovery.relists        counter full re-reads by watchers after an outage
//	wayfinder.discovery.skipped_values counter nodes that did not decode
//	wayfinder.discovery.field_problems counter optional fields dropped from kept instances
//
// All carry wayfinder.backend="zk" and nothing else.
func (r *Registry) registerMetrics(mp metric.MeterProvider) func() {
	return drivermetrics.Register(mp, "github.com/wayfinder-rpc/wayfinder/registry/zookeeper", Scheme, []drivermetrics.Spec{
		{Name: "wayfinder.registration.instances", Unit: "{instance}", Desc: "Instances this client keeps registered."},
		{Name: "wayfinder.registration.registered", Unit: "{instance}", Desc: "Instances written under the live session."},
		{Name: "wayfinder.registration.healthy", Unit: "1", Desc: "1 while every instance is registered, else 0."},
		{Name: "wayfinder.registration.sessions", Unit: "{session}", Desc: "Sessions the instances were written under: 1 plus expiries.", Counter: true},
		{Name: "wayfinder.registration.reputs", Unit: "{put}", Desc: "Own nodes written again after others deleted them.", Counter: true},
		{Name: "wayfinder.discovery.relists", Unit: "{list}", Desc: "Full re-reads by watchers after an outage.", Counter: true},
		{Name: "wayfinder.discovery.skipped_values", Unit: "{value}", Desc: "Nodes under the root that did not decode.", Counter: true},
		{Name: "wayfinder.discovery.field_problems", Unit: "{field}", Desc: "Optional fields dropped from kept instances, once per instance and value.", Counter: true},
	}, func() map[string]int64 {
		s := r.Stats()
		r.mu.Lock()
		sess := r.liveSessionLocked()
		n, reg := len(r.entries), 0
		for _, e := range r.entries {
			if e.synced(sess) {
				reg++
			}
		}
		healthy := int64(0)
		if reg == n && r.lastErr == nil {
			healthy = 1
		}
		r.mu.Unlock()
		return map[string]int64{
			"wayfinder.registration.instances":   int64(n),
			"wayfinder.registration.registered":  int64(reg),
			"wayfinder.registration.healthy":     healthy,
			"wayfinder.registration.sessions":    int64(s.Sessions),
			"wayfinder.registration.reputs":      int64(s.Rewrites),
			"wayfinder.discovery.relists":        int64(s.Relists),
			"wayfinder.discovery.skipped_values": int64(s.SkippedValues),
			"wayfinder.discovery.field_problems": int64(s.FieldProblems),
		}
	})
}
