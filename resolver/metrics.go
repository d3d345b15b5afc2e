package resolver

import (
	"context"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Metric names, following OpenTelemetry's conventions. Attributes are
// wayfinder.service and wayfinder.backend (a URL scheme or a Go type):
// never instance IDs or addresses, so cardinality is bounded by the
// number of watched services.
const (
	MetricUpdates   = "wayfinder.discovery.updates"            // counter: instance sets published by upstream watches
	MetricErrors    = "wayfinder.discovery.errors"             // counter: upstream watch errors
	MetricInstances = "wayfinder.discovery.instances"          // gauge: instances in the current view
	MetricStaleness = "wayfinder.discovery.staleness"          // gauge, s: time since the view was last known fresh; 0 while healthy
	MetricWatches   = "wayfinder.discovery.watches"            // gauge: upstream watches running
	MetricResolvers = "wayfinder.discovery.resolvers"          // gauge: ClientConn resolvers subscribed
	MetricHeld      = "wayfinder.discovery.mass_removals_held" // counter: mass removals held by the guard
	// MetricPropagation is a histogram, in s, of the time from a
	// registration to the resolver handing it to gRPC: for each instance
	// new or changed in a set pushed to a ClientConn, now minus the
	// instance's Registered stamp, written by the registrant's clock.
	// Across hosts it includes their clock skew; negative values are
	// recorded as 0. Instances without a stamp (other tools' or older
	// writers') are not observed, nor are removals, which carry none, nor
	// a ClientConn's first set, which is old news rather than a change.
	MetricPropagation = "wayfinder.discovery.propagation"
)

// propagationBuckets suit the range from an in-process store
// (microseconds) through Consul blocking queries and etcd watches
// (milliseconds) to recoveries from outages (seconds).
var propagationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

type cacheMetrics struct {
	updates, errors, heldC metric.Int64Counter
	propagation            metric.Float64Histogram
	reg                    metric.Registration
}

func newCacheMetrics(c *Cache) *cacheMetrics {
	mp := c.meter
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter("github.com/wayfinder-rpc/wayfinder/resolver")
	cm := &cacheMetrics{}
	// Instrument errors only come from invalid names, which these are not;
	// a nil instrument from a failed call is still a usable no-op.
	cm.updates, _ = m.Int64Counter(MetricUpdates, metric.WithUnit("{update}"),
		metric.WithDescription("Instance sets published by upstream registry watches."))
	cm.errors, _ = m.Int64Counter(MetricErrors, metric.WithUnit("{error}"),
		metric.WithDescription("Errors from upstream registry watches; the last good set stays in use."))
	cm.heldC, _ = m.Int64Counter(MetricHeld, metric.WithUnit("{removal}"),
		metric.WithDescription("Updates that would have removed most of a service at once, held by the mass-removal guard."))
	cm.propagation, _ = m.Float64Histogram(MetricPropagation, metric.WithUnit("s"),
		metric.WithDescription("Time from an instance's registration or change to its delivery to a gRPC ClientConn, by the registrant's clock."),
		metric.WithExplicitBucketBoundaries(propagationBuckets...))
	inst, _ := m.Int64ObservableGauge(MetricInstances, metric.WithUnit("{instance}"),
		metric.WithDescription("Instances in each watched service's current view."))
	stale, _ := m.Float64ObservableGauge(MetricStaleness, metric.WithUnit("s"),
		metric.WithDescription("Time since each watched service's view was last known fresh; 0 while its watch is healthy."))
	watches, _ := m.Int64ObservableGauge(MetricWatches, metric.WithUnit("{watch}"),
		metric.WithDescription("Upstream registry watches running."))
	resolvers, _ := m.Int64ObservableGauge(MetricResolvers, metric.WithUnit("{resolver}"),
		metric.WithDescription("ClientConn resolvers subscribed to watches."))
	cm.reg, _ = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		infos := c.Watches()
		subs := 0
		for _, wi := range infos {
			attrs := metric.WithAttributes(attribute.String("wayfinder.service", wi.Service), attribute.String("wayfinder.backend", wi.Backend))
			o.ObserveInt64(inst, int64(len(wi.Instances)), attrs)
			o.ObserveFloat64(stale, wi.Staleness.Seconds(), attrs)
			subs += wi.Resolvers
		}
		o.ObserveInt64(watches, int64(len(infos)))
		o.ObserveInt64(resolvers, int64(subs))
		return nil
	}, inst, stale, watches, resolvers)
	return cm
}

// attrs builds a watch's metric attributes; once per watch, so that
// recording allocates nothing.
func attrs(k watchKey) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(attribute.String("wayfinder.service", k.service), attribute.String("wayfinder.backend", k.backend())))
}

func (m *cacheMetrics) update(a metric.MeasurementOption) {
	if m.updates != nil {
		m.updates.Add(context.Background(), 1, a)
	}
}

func (m *cacheMetrics) error(a metric.MeasurementOption) {
	if m.errors != nil {
		m.errors.Add(context.Background(), 1, a)
	}
}

func (m *cacheMetrics) held(a metric.MeasurementOption) {
	if m.heldC != nil {
		m.heldC.Add(context.Background(), 1, a)
	}
}

// propagated records, for each instance of cur that is not in prev or
// differs from it there, the time since its Registered stamp. Both sets
// are sorted by ID, as watchers return them, so one merge walk finds
// the changes without allocating.
func (m *cacheMetrics) propagated(prev, cur []registry.Instance, now time.Time, opts []metric.RecordOption) {
	if m.propagation == nil || !m.propagation.Enabled(context.Background()) {
		return
	}
	i := 0
	for _, c := range cur {
		if c.Registered.IsZero() {
			continue
		}
		for i < len(prev) && prev[i].ID < c.ID {
			i++
		}
		// Several instances may share an ID (one per Consul datacenter):
		// c is unchanged if any of them equals it.
		same := false
		for j := i; j < len(prev) && prev[j].ID == c.ID; j++ {
			if prev[j].Equal(c) {
				same = true
				break
			}
		}
		if same {
			continue
		}
		// Clocks of different hosts disagree: a stamp from the future
		// is a propagation faster than the skew can show.
		d := max(now.Sub(c.Registered), 0)
		m.propagation.Record(context.Background(), d.Seconds(), opts...)
	}
}

func (m *cacheMetrics) unregister() {
	if m.reg != nil {
		_ = m.reg.Unregister()
	}
}

// WatchInfo describes one upstream watch, for metrics and debug pages.
type WatchInfo struct {
	Registry   string              `json:"registry"` // the registry URL (redacted) or the Discovery's type
	Backend    string              `json:"backend"`  // the URL scheme or the Discovery's type
	Service    string              `json:"service"`
	Instances  []registry.Instance `json:"instances"` // the current view (the last good set)
	Fresh      bool                `json:"fresh"`     // a set was read and no error came since
	LastError  string              `json:"last_error,omitempty"`
	Staleness  time.Duration       `json:"staleness_ns"` // 0 while fresh; else time since the last good read (or since the start)
	LastChange time.Time           `json:"last_change"`  // when the view last changed
	Updates    int64               `json:"updates"`
	Errors     int64               `json:"errors"`
	Holding    bool                `json:"holding"` // a mass removal is being held (see WithMassRemovalGuard)
	Held       int64               `json:"mass_removals_held"`
	Resolvers  int                 `json:"resolvers"` // ClientConns subscribed
	Upstreams  int                 `json:"upstream_watches"`
	// Index is the registry's index or revision of the last set read
	// from upstream, as its watcher reports it (registry.IndexedWatcher):
	// Consul's X-Consul-Index (per datacenter when there are several),
	// etcd's revision, the memory store's change counter. It is empty
	// before the first read and for watchers that report none. While the
	// guard holds a mass removal, Index is the removal's and Instances
	// the held set: the registry's, plus the instances the guard keeps.
	Index string `json:"index"`
	// FieldProblems are the optional fields of the current instances
	// that the backend could not read and replaced with their defaults
	// (a foreign tool's value under a key Wayfinder uses), when the
	// Discovery reports them (registry.FieldProblemReporter).
	FieldProblems []registry.FieldProblem `json:"field_problems,omitempty"`
}

// Watches describes the cache's running watches, sorted by registry and
// service.
func (c *Cache) Watches() []WatchInfo {
	now := c.now()
	c.mu.Lock()
	ws := make([]*watch, 0, len(c.watches))
	for _, w := range c.watches {
		ws = append(ws, w)
	}
	c.mu.Unlock()
	out := make([]WatchInfo, 0, len(ws))
	for _, w := range ws {
		w.mu.Lock()
		wi := WatchInfo{
			Registry: w.key.sourceName(), Backend: w.key.backend(), Service: w.service,
			Instances: cloneInstances(w.st.instances), Fresh: w.st.ok && w.st.err == nil, LastChange: w.lastChange,
			Updates: w.updates, Errors: w.errors, Resolvers: w.refs, Upstreams: w.upstreams,
			Holding: !w.holdSince.IsZero(), Held: w.held, Index: w.index,
		}
		if w.st.err != nil {
			wi.LastError = w.st.err.Error()
		}
		if !wi.Fresh {
			since := w.lastGood
			if since.IsZero() {
				since = w.started
			}
			wi.Staleness = now.Sub(since)
		}
		w.mu.Unlock()
		if w.problems != nil {
			// Outside w.mu: the backend takes its own lock. Problems of
			// instances gone since are dropped, as the interface asks.
			ids := make(map[string]bool, len(wi.Instances))
			for _, i := range wi.Instances {
				ids[i.ID] = true
			}
			for _, p := range w.problems.FieldProblems(w.service) {
				if ids[p.ID] {
					wi.FieldProblems = append(wi.FieldProblems, p)
				}
			}
		}
		out = append(out, wi)
	}
	slices.SortFunc(out, func(a, b WatchInfo) int {
		if c := strings.Compare(a.Registry, b.Registry); c != 0 {
			return c
		}
		return strings.Compare(a.Service, b.Service)
	})
	return out
}

func cloneInstances(in []registry.Instance) []registry.Instance {
	out := make([]registry.Instance, len(in))
	for i, inst := range in {
		out[i] = inst.Clone()
	}
	return out
}
