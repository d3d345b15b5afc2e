package consul

import (
	"sync/atomic"

	"github.com/hashicorp/consul/api"
	"go.opentelemetry.io/otel/metric"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver/drivermetrics"
)

// counters are background events, read by the metrics callback.
type counters struct {
	queries     atomic.Int64 // blocking-query round trips
	queryErrors atomic.Int64 // of those, failed
	indexResets atomic.Int64 // X-Consul-Index went backwards: reset to 0

	// Blocking queries by the agent's X-Consul-Query-Backend.
	streaming, blockingQuery, unreported atomic.Int64
}

// countBackend counts one answer to a blocking query by the backend the
// agent named in X-Consul-Query-Backend ("" if none).
func (c *counters) countBackend(backend string) {
	switch backend {
	case api.QueryBackendStreaming:
		c.streaming.Add(1)
	case api.QueryBackendBlockingQuery:
		c.blockingQuery.Add(1)
	default:
		c.unreported.Add(1)
	}
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
//	wayfinder.discovery.streaming_queries  counter blocking queries the agent answered from its streaming backend
//	wayfinder.discovery.field_problems     counter Wayfinder fields dropped from kept instances
//
// All carry wayfinder.backend="consul" and nothing else.
func WithMeterProvider(mp metric.MeterProvider) Option { return func(c *config) { c.meter = mp } }

// registerMetrics installs the callback; the returned function removes it.
func (r *Registry) registerMetrics(mp metric.MeterProvider) func() {
	return drivermetrics.Register(mp, "github.com/wayfinder-rpc/wayfinder/registry/consul", Scheme, []drivermetrics.Spec{
		{Name: "wayfinder.registration.instances", Unit: "{instance}", Desc: "Instances this client keeps registered."},
		{Name: "wayfinder.registration.registered", Unit: "{instance}", Desc: "Instances registered with the agent now."},
		{Name: "wayfinder.registration.healthy", Unit: "{instance}", Desc: "Instances reported healthy at the last heartbeat."},
		{Name: "wayfinder.registration.reregistrations", Unit: "{registration}", Desc: "Registrations after the first: agent restarts, lost services.", Counter: true},
		{Name: "wayfinder.discovery.queries", Unit: "{query}", Desc: "Blocking-query round trips.", Counter: true},
		{Name: "wayfinder.discovery.query_errors", Unit: "{query}", Desc: "Failed blocking queries.", Counter: true},
		{Name: "wayfinder.discovery.index_resets", Unit: "{reset}", Desc: "Times X-Consul-Index went backwards and was reset to 0.", Counter: true},
		{Name: "wayfinder.discovery.streaming_queries", Unit: "{query}", Desc: "Blocking queries the agent answered from its streaming backend (X-Consul-Query-Backend: streaming).", Counter: true},
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
			if st.State == registry.StateRegistered {
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
			"wayfinder.discovery.streaming_queries":  r.counters.streaming.Load(),
			"wayfinder.discovery.field_problems":     int64(r.problems.Count()),
		}
	})
}

// QueryBackends counts the health queries of a Registry's watches that
// the agent may stream (those with an index and, with WithAgentCache,
// every one) by the agent backend that answered them, as the agent names
// it in its X-Consul-Query-Backend header.
type QueryBackends struct {
	// Streaming: answered from the agent's materialized view, which one
	// subscription per service (shared by all the agent's clients) keeps
	// up to date from a server. See use_streaming_backend.
	Streaming int64
	// BlockingQuery: answered by a blocking RPC to a server, one per
	// request.
	BlockingQuery int64
	// Unreported: without the header (agents before Consul 1.10, or a
	// proxy that drops it).
	Unreported int64
}

// QueryBackends returns how r's watches' queries have been answered so
// far. A watch's first read, and its first read after an error, carry
// no index: they are plain RPCs to a server unless WithAgentCache is set
// (and a confirming read, in the default and Consistent modes, always
// is), and are counted only when cached. Lookup is not counted.
func (r *Registry) QueryBackends() QueryBackends {
	return QueryBackends{
		Streaming:     r.counters.streaming.Load(),
		BlockingQuery: r.counters.blockingQuery.Load(),
		Unreported:    r.counters.unreported.Load(),
	}
}
