package kubernetes

import (
	"go.opentelemetry.io/otel/metric"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver/drivermetrics"
)

// Status implements registry.StatusReporter. An instance is
// StateRegistered from a successful Register until Deregister or Close,
// StateRetrying (with the error) while renewing its slice fails, and
// StateRegistered again at the next successful renewal. Registrations
// counts the slice's writes: 1, plus one each time the slice was found
// deleted and written again. Healthy is always true: Kubernetes keeps an
// instance's health in its endpoint's conditions, which Register does
// not report. An instance that Register left to Kubernetes (a Pod's own
// endpoint), never registered or deregistered is StateUnknown.
func (r *Registry) Status(inst registry.Instance) registry.RegistrationStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	reg := r.regs[inst.Key()]
	if reg == nil {
		return registry.RegistrationStatus{State: registry.StateUnknown, Healthy: true, Changed: make(chan struct{})}
	}
	st := registry.RegistrationStatus{State: registry.StateRegistered, Err: reg.err, Registrations: reg.writes, Healthy: true, Changed: reg.changed}
	if reg.err != nil {
		st.State = registry.StateRetrying
	}
	return st
}

// WithMeterProvider records the Registry's metrics with mp (default:
// OpenTelemetry's global provider, a no-op until one is installed):
//
//	wayfinder.registration.instances       gauge   instances this client keeps registered
//	wayfinder.registration.registered      gauge   of those, whose last write or renewal succeeded
//	wayfinder.registration.healthy         gauge   1 if every instance is registered, else 0
//	wayfinder.registration.reregistrations counter slices written again after their deletion
//	wayfinder.discovery.relists            counter full re-reads by watchers after their first
//	wayfinder.discovery.field_problems     counter endpoint fields dropped, once per instance and value
//
// All carry wayfinder.backend="kubernetes" and nothing else.
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.meter = mp } }

// registerMetrics installs the callback; the returned function removes it.
func (r *Registry) registerMetrics(mp metric.MeterProvider) func() {
	return drivermetrics.Register(mp, "github.com/wayfinder-rpc/wayfinder/registry/kubernetes", Scheme, []drivermetrics.Spec{
		{Name: "wayfinder.registration.instances", Unit: "{instance}", Desc: "Instances this client keeps registered."},
		{Name: "wayfinder.registration.registered", Unit: "{instance}", Desc: "Instances whose last write or renewal succeeded."},
		{Name: "wayfinder.registration.healthy", Unit: "1", Desc: "1 while every instance is registered, else 0."},
		{Name: "wayfinder.registration.reregistrations", Unit: "{registration}", Desc: "Slices written again after their deletion.", Counter: true},
		{Name: "wayfinder.discovery.relists", Unit: "{list}", Desc: "Full re-reads by watchers after their first.", Counter: true},
		{Name: "wayfinder.discovery.field_problems", Unit: "{field}", Desc: "Endpoint fields dropped from kept instances, or endpoints left out, once per instance and value.", Counter: true},
	}, func() map[string]int64 {
		var n, registered int64
		r.mu.Lock()
		for _, reg := range r.regs {
			n++
			if reg.err == nil {
				registered++
			}
		}
		r.mu.Unlock()
		healthy := int64(0)
		if registered == n {
			healthy = 1
		}
		return map[string]int64{
			"wayfinder.registration.instances":       n,
			"wayfinder.registration.registered":      registered,
			"wayfinder.registration.healthy":         healthy,
			"wayfinder.registration.reregistrations": r.rewrites.Load(),
			"wayfinder.discovery.relists":            r.relists.Load(),
			"wayfinder.discovery.field_problems":     int64(r.problems.Count()),
		}
	})
}
