// Package cctest has test helpers shared across packages: a resolver
// ClientConn that records what a resolver pushes, readers of the
// resolver's metrics, and a buffer safe to read while it is written.
package cctest

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/url"
	"sync"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// SetsCC is a gRPC resolver.ClientConn that records the instance sets a
// resolver pushes, and how many pushes came before the last error.
type SetsCC struct {
	mu       sync.Mutex
	sets     [][]registry.Instance
	errs     int
	errAfter int // len(sets) when the last error came
}

// UpdateState implements resolver.ClientConn.
func (c *SetsCC) UpdateState(s gresolver.State) error {
	set := make([]registry.Instance, 0, len(s.Endpoints))
	for _, ep := range s.Endpoints {
		inst, _ := instance.FromEndpoint(ep)
		set = append(set, inst)
	}
	c.mu.Lock()
	c.sets = append(c.sets, set)
	c.mu.Unlock()
	return nil
}

// ReportError implements resolver.ClientConn.
func (c *SetsCC) ReportError(error) {
	c.mu.Lock()
	c.errs++
	c.errAfter = len(c.sets)
	c.mu.Unlock()
}

// NewAddress implements resolver.ClientConn.
func (c *SetsCC) NewAddress([]gresolver.Address) {}

// ParseServiceConfig implements resolver.ClientConn.
func (c *SetsCC) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{Err: errors.New("no service config")}
}

// Snapshot returns the sets pushed so far, the errors reported, and how
// many sets had been pushed when the last error came.
func (c *SetsCC) Snapshot() (sets [][]registry.Instance, errs, errAfter int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]registry.Instance(nil), c.sets...), c.errs, c.errAfter
}

// PropagationStats sums the data points of the resolver's propagation
// histogram: their count, and the smallest and largest value seen.
func PropagationStats(t testing.TB, r *sdkmetric.ManualReader) (count uint64, lo, hi float64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == resolver.MetricPropagation {
				for _, dp := range h.DataPoints {
					count += dp.Count
					if v, ok := dp.Min.Value(); ok {
						lo = min(lo, v)
					}
					if v, ok := dp.Max.Value(); ok {
						hi = max(hi, v)
					}
				}
			}
		}
	}
	return count, lo, hi
}

// MetricSums returns each int64 gauge's and sum's total over its data
// points.
func MetricSums(t testing.TB, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect() = %v", err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] += p.Value
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] += p.Value
				}
			}
		}
	}
	return out
}

// Resolve builds a Wayfinder resolver for service over disc, on a cache
// of its own with the given options, recording metrics in a manual
// reader, and pushing to a SetsCC; all are closed at cleanup.
func Resolve(t testing.TB, disc registry.Discovery, service string, opts ...resolver.CacheOption) (*SetsCC, *sdkmetric.ManualReader, *resolver.Cache) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	cache := resolver.NewCache(append([]resolver.CacheOption{resolver.WithMeterProvider(mp), resolver.WithLinger(0)}, opts...)...)
	t.Cleanup(func() { cache.Close() })
	u, err := url.Parse("wayfinder:///" + service)
	if err != nil {
		t.Fatal(err)
	}
	cc := &SetsCC{}
	rs, err := resolver.NewBuilder(disc, resolver.WithCache(cache)).Build(gresolver.Target{URL: *u}, cc, gresolver.BuildOptions{})
	if err != nil {
		t.Fatalf("Build(%s) = %v", u, err)
	}
	t.Cleanup(rs.Close)
	return cc, reader, cache
}

// SyncBuffer is a bytes.Buffer that a test can read while a logger or a
// running command writes to it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
