package consul

import (
	"sync/atomic"

	"go.opentelemetry.io/otel/metric"

	"github.com/wayfinder-rpc/wayfinder/internal/backendmetrics"
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
//	wayfinder.discovery.field_problems     counter Wayfinder fields dropped from kept instances
//
// All carry wayfinder.backend="consul" and nothing else.
func WithMeterProvider(mp metric.MeterProvider) Option { return func(c *config) { c.meter = mp } }

// registerMetrics installs the callback; the returned function removes it.
func (r *Registry) registerMetrics(mp metric.MeterProvider) func() {
	return backendmetrics.Register(mp, "github.com/wayfinder-rpc/wayfinder/registry/consul", Scheme, []backendmetrics.Spec{
		{Name: "wayfinder.registration.instances", Unit: "{instance}", Desc: "Instances this client keeps registered."},
		{Name: "wayfinder.registration.registered", Unit: "{instance}", Desc: "Instances registered with the agent now."},
		{Name: "wayfinder.registration.healthy", Unit: "{instance}", Desc: "Instances reported healthy at the last heartbeat."},
		{Name: "wayfinder.registration.reregistrations", Unit: "{registration}", Desc: "Registrations after the first: agent restarts, lost services.", Counter: true},
		{Name: "wayfinder.discovery.queries", Unit: "{query}", Desc: "Blocking-query round trips.", Counter: true},
		{Name: "wayfinder.discovery.query_errors", Unit: "{query}", Desc: "Failed blocking queries.", Counter: true},
		{Name: "wayfinder.discovery.index_resets", Unit: "{reset}", Desc: "Times X-Consul-Index went backwards and was reset to 0.", Counter: true},
		{Name: "wayfinder.discovery.field_problems", Unit: "{field}", Desc: "Wayfinder fields dropped from kept instances, once per instance and value.", Counter: true},
	}, func() map[string]int64 {
		var n, registered, healthy, rereg int64
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
				registered++
			}
			if st.Healthy {
				healthy++
			}
			if st.Registrations > 1 {
				rereg += int64(st.Registrations - 1)
			}
		}
		return map[string]int64{
			"wayfinder.registration.instances":       n,
			"wayfinder.registration.registered":      registered,
			"wayfinder.registration.healthy":         healthy,
			"wayfinder.registration.reregistrations": rereg,
			"wayfinder.discovery.queries":            r.counters.queries.Load(),
			"wayfinder.discovery.query_errors":       r.counters.queryErrors.Load(),
			"wayfinder.discovery.index_resets":       r.counters.indexResets.Load(),
			"wayfinder.discovery.field_problems":     int64(r.problems.Count()),
		}
	})
}
