package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/cctest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// collect returns metric name -> sum over data points (gauges and sums).
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] += float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] += float64(p.Value)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					out[m.Name] += p.Value
				}
			}
		}
	}
	return out
}

func TestMetricsAndWatches(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	store := memory.NewStore()
	reg := store.Open()
	cache := newCache(t, resolver.WithMeterProvider(mp))
	b := resolver.NewBuilder(reg, resolver.WithCache(cache))
	cc := newFakeCC()
	r := build(t, b, "wayfinder:///hello", cc)
	defer r.Close()
	for i := range 3 {
		if err := reg.Register(t.Context(), registry.Instance{ID: string(rune('a' + i)), Service: "hello", Address: "127.0.0.1:100" + string(rune('1'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	cc.wait(t, "pushed 3 instances", func(int, int) bool {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		return len(cc.states) > 0 && len(cc.states[len(cc.states)-1].Endpoints) == 3
	})
	m := collect(t, reader)
	if m[resolver.MetricInstances] != 3 || m[resolver.MetricUpdates] < 1 || m[resolver.MetricWatches] != 1 || m[resolver.MetricResolvers] != 1 || m[resolver.MetricStaleness] != 0 {
		t.Fatalf("metrics while healthy = %v", m)
	}
	store.SetOutage(errors.New("down"))
	cc.wait(t, "reported the outage", func(_, e int) bool { return e > 0 })
	time.Sleep(20 * time.Millisecond)
	m = collect(t, reader)
	if m[resolver.MetricErrors] < 1 || m[resolver.MetricStaleness] <= 0 || m[resolver.MetricInstances] != 3 {
		t.Fatalf("metrics during an outage = %v; want errors ≥ 1, staleness > 0, and the 3 instances kept", m)
	}
	ws := cache.Watches()
	if len(ws) != 1 || ws[0].Service != "hello" || ws[0].Fresh || ws[0].LastError == "" || len(ws[0].Instances) != 3 {
		t.Fatalf("Watches() during an outage = %+v", ws)
	}
	// The memory store's index counts the service's changes: three
	// registrations. An error keeps the index of the set it keeps.
	if ws[0].Index != "3" {
		t.Errorf("Watches()[0].Index during an outage = %q, want \"3\", the last set's", ws[0].Index)
	}
}

// TestWatchesIndex: Watches reports the upstream watcher's index of the
// last set read, after every change; and none for a watcher that does
// not implement registry.IndexedWatcher.
func TestWatchesIndex(t *testing.T) {
	reg := memory.New()
	cache := newCache(t)
	cc := newFakeCC()
	r := build(t, resolver.NewBuilder(reg, resolver.WithCache(cache)), "wayfinder:///hello", cc)
	defer r.Close()
	wait.For(t, 10*time.Second, "the first set", func() bool { ws := cache.Watches(); return len(ws) == 1 && ws[0].Fresh })
	if got := cache.Watches()[0].Index; got != "0" {
		t.Errorf("Index of the first (empty) set = %q, want \"0\"", got)
	}
	for i, in := range insts(0, 1) {
		if err := reg.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
		want := strconv.Itoa(i + 1)
		wait.For(t, 10*time.Second, "index "+want, func() bool { return cache.Watches()[0].Index == want })
		if n := len(cache.Watches()[0].Instances); n != i+1 {
			t.Errorf("at index %s the view has %d instances, want %d", want, n, i+1)
		}
	}

	up := scripted{sets: make(chan []registry.Instance)}
	plain := newCache(t)
	pcc := newFakeCC()
	pr := build(t, resolver.NewBuilder(up, resolver.WithCache(plain)), "wayfinder:///hello", pcc)
	defer pr.Close()
	up.sets <- insts(0)
	pcc.wait(t, "pushed 1", func(int, int) bool { return lastLen(pcc) == 1 })
	if ws := plain.Watches(); len(ws) != 1 || ws[0].Index != "" {
		t.Errorf("Watches() over a watcher without an index = %+v, want Index \"\"", ws)
	}
}

// propagation sums the data points of the propagation histogram: how
// many observations, their extremes, and the attribute sets seen.
type propagation struct {
	count    uint64
	min, max float64
	attrs    []string
}

// waitPropagation reads the histogram until it has at least n
// observations: the resolver records a change after gRPC's UpdateState
// returns, so just after a push is seen the observation may not be yet.
func waitPropagation(t *testing.T, r *sdkmetric.ManualReader, n uint64) propagation {
	t.Helper()
	var p propagation
	wait.For(t, 10*time.Second, fmt.Sprintf("%d propagation observations", n), func() bool {
		p = readPropagation(t, r)
		return p.count >= n
	})
	return p
}

func readPropagation(t *testing.T, r *sdkmetric.ManualReader) propagation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	p := propagation{min: math.Inf(1), max: math.Inf(-1)}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != resolver.MetricPropagation {
				continue
			}
			if m.Unit != "s" {
				t.Errorf("%s unit = %q, want s", m.Name, m.Unit)
			}
			h, ok := m.Data.(metricdata.Histogram[float64])
			if !ok {
				t.Fatalf("%s is a %T, want a float64 histogram", m.Name, m.Data)
			}
			for _, dp := range h.DataPoints {
				p.count += dp.Count
				if v, ok := dp.Min.Value(); ok {
					p.min = min(p.min, v)
				}
				if v, ok := dp.Max.Value(); ok {
					p.max = max(p.max, v)
				}
				p.attrs = append(p.attrs, dp.Attributes.Encoded(attribute.DefaultEncoder()))
			}
		}
	}
	return p
}

func lastInstance(t *testing.T, cc *fakeCC, id string) (registry.Instance, bool) {
	t.Helper()
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.states) == 0 {
		return registry.Instance{}, false
	}
	for _, ep := range cc.states[len(cc.states)-1].Endpoints {
		if inst, ok := instance.FromEndpoint(ep); ok && inst.ID == id {
			return inst, true
		}
	}
	return registry.Instance{}, false
}

// TestPropagationMetric: each instance that is new or changed in a set
// pushed to gRPC is observed once, with a plausible latency; a
// ClientConn's first set, an identical re-registration and a removal are
// not observed.
func TestPropagationMetric(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	reg := memory.New()
	register := func(inst registry.Instance) {
		t.Helper()
		if err := reg.Register(t.Context(), inst); err != nil {
			t.Fatal(err)
		}
	}
	a := registry.Instance{ID: "a", Service: "hello", Address: "127.0.0.1:1001"}
	b := registry.Instance{ID: "b", Service: "hello", Address: "127.0.0.1:1002"}
	register(a)
	cache := newCache(t, resolver.WithMeterProvider(mp))
	cc := newFakeCC()
	r := build(t, resolver.NewBuilder(reg, resolver.WithCache(cache)), "wayfinder:///hello", cc)
	defer r.Close()
	cc.wait(t, "pushed a", func(int, int) bool { return lastLen(cc) == 1 })
	if p := readPropagation(t, reader); p.count != 0 {
		t.Fatalf("after a ClientConn's first set, propagation count = %d, want 0: that set is not a change", p.count)
	}
	if got, _ := lastInstance(t, cc, "a"); got.Registered.IsZero() {
		t.Fatalf("pushed instance %v has no Registered stamp", got)
	}

	start := time.Now()
	register(b)
	cc.wait(t, "pushed a and b", func(int, int) bool { return lastLen(cc) == 2 })
	p := waitPropagation(t, reader, 1)
	if p.count != 1 {
		t.Fatalf("after adding b, propagation count = %d, want 1 (b only)", p.count)
	}
	if p.min < 0 || p.max > time.Since(start).Seconds() {
		t.Errorf("propagation of b = [%v, %v] s; want within 0..%v", p.min, p.max, time.Since(start).Seconds())
	}
	want := `wayfinder.backend=*memory.Registry,wayfinder.service=hello`
	if len(p.attrs) != 1 || p.attrs[0] != want {
		t.Errorf("propagation attributes = %q, want [%q]", p.attrs, want)
	}

	// An identical re-registration keeps the stamp and changes nothing.
	states, _ := cc.counts()
	register(a)
	a2 := a
	a2.Weight = 5
	register(a2)
	cc.wait(t, "pushed a's new weight", func(int, int) bool {
		got, _ := lastInstance(t, cc, "a")
		return got.Weight == 5
	})
	if now, _ := cc.counts(); now != states+1 {
		t.Errorf("re-registering a, then changing its weight, made %d pushes; want 1", now-states)
	}
	if p := waitPropagation(t, reader, 2); p.count != 2 {
		t.Fatalf("after changing a's weight, propagation count = %d, want 2", p.count)
	}

	// Removals carry no stamp.
	if err := reg.Deregister(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	cc.wait(t, "pushed a alone", func(int, int) bool { return lastLen(cc) == 1 })
	if p := readPropagation(t, reader); p.count != 2 {
		t.Fatalf("after removing b, propagation count = %d, want still 2", p.count)
	}
}

// TestPropagationSkewAndNoStamp: a stamp from the future (the
// registrant's clock runs ahead) is recorded as 0, and an instance
// without a stamp (an older or foreign writer) is not observed.
func TestPropagationSkewAndNoStamp(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	up := scripted{sets: make(chan []registry.Instance)}
	cache := newCache(t, resolver.WithMeterProvider(mp))
	cc := newFakeCC()
	r := build(t, resolver.NewBuilder(up, resolver.WithCache(cache)), "wayfinder:///hello", cc)
	defer r.Close()
	up.sets <- insts(0)
	cc.wait(t, "pushed 1", func(int, int) bool { return lastLen(cc) == 1 })
	set := insts(0, 1, 2)
	set[1].Registered = time.Now().Add(time.Hour) // skewed
	// set[2] has no stamp.
	up.sets <- set
	cc.wait(t, "pushed 3", func(int, int) bool { return lastLen(cc) == 3 })
	p := waitPropagation(t, reader, 1)
	if p.count != 1 || p.min != 0 || p.max != 0 {
		t.Fatalf("propagation = %d observations in [%v, %v]; want one, clamped to 0", p.count, p.min, p.max)
	}
	// A stamp alone is not a change: the same instance with a new stamp
	// is not pushed again, nor observed.
	states, _ := cc.counts()
	set = insts(0, 1, 2, 3)
	set[0].Registered = time.Now()
	set[3].Registered = time.Now().Add(-2 * time.Second)
	up.sets <- set
	cc.wait(t, "pushed 4", func(int, int) bool { return lastLen(cc) == 4 })
	if now, _ := cc.counts(); now != states+1 {
		t.Fatalf("%d pushes, want 1", now-states)
	}
	p = waitPropagation(t, reader, 2)
	if p.count != 2 || p.max < 2 || p.max > 30 {
		t.Fatalf("propagation = %d observations in [%v, %v]; want 2, the new one about 2 s", p.count, p.min, p.max)
	}
}

// indexed is an upstream whose watcher returns the sets the test sends,
// each with the index the test gives it.
type indexed struct{ sets chan indexedSet }

type indexedSet struct {
	set   []registry.Instance
	index string
}

func (u indexed) Lookup(context.Context, string) ([]registry.Instance, error) { return nil, nil }
func (u indexed) Watch(context.Context, string) (registry.Watcher, error) {
	return &indexedWatcher{sets: u.sets}, nil
}

type indexedWatcher struct {
	sets  chan indexedSet
	index atomic.Pointer[string]
}

func (w *indexedWatcher) Next(ctx context.Context) ([]registry.Instance, error) {
	select {
	case s := <-w.sets:
		w.index.Store(&s.index)
		return s.set, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (w *indexedWatcher) Index() string {
	if p := w.index.Load(); p != nil {
		return *p
	}
	return ""
}

func (w *indexedWatcher) Close() error { return nil }

// TestWatchesIndexOfHeldRemoval: while the guard holds a mass removal,
// Index is the removal's and Instances the set before it.
func TestWatchesIndexOfHeldRemoval(t *testing.T) {
	up := indexed{sets: make(chan indexedSet)}
	cache := newCache(t, resolver.WithMassRemovalGuard(0.5, 2, time.Minute))
	cc := newFakeCC()
	r := build(t, resolver.NewBuilder(up, resolver.WithCache(cache)), "wayfinder:///hello", cc)
	defer r.Close()
	up.sets <- indexedSet{insts(0, 1, 2, 3, 4, 5), "dc1=10"}
	cc.wait(t, "pushed 6", func(int, int) bool { return lastLen(cc) == 6 })
	if w := cache.Watches()[0]; w.Index != "dc1=10" {
		t.Errorf("Index = %q, want dc1=10", w.Index)
	}
	up.sets <- indexedSet{insts(0), "dc1=11"}
	wait.For(t, 10*time.Second, "the hold", func() bool { return cache.Watches()[0].Holding })
	if w := cache.Watches()[0]; w.Index != "dc1=11" || len(w.Instances) != 6 {
		t.Errorf("while holding: Index = %q with %d instances, want the removal's dc1=11 and the 6 held", w.Index, len(w.Instances))
	}
}

// TestOutageLogged: a real outage of the memory store, through the
// cache, logs one Warn when it starts, Debug for the retries, and one
// Info when the watch reads again, whatever the number of errors.
func TestOutageLogged(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	defer reg.Close()
	if err := reg.Register(t.Context(), registry.Instance{ID: "a", Service: "hello", Address: "127.0.0.1:1001"}); err != nil {
		t.Fatal(err)
	}
	var buf cctest.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cc, _, cache := cctest.Resolve(t, reg, "hello", resolver.WithLogger(logger))
	wait.For(t, 10*time.Second, "the instance pushed", func() bool { sets, _, _ := cc.Snapshot(); return len(sets) > 0 })

	// The memory store reports an outage once per SetOutage: three calls
	// make three errors, as a backend retrying a down registry would.
	for i := range 3 {
		store.SetOutage(fmt.Errorf("down %d", i))
		wait.For(t, 20*time.Second, "a watch error", func() bool {
			ws := cache.Watches()
			return len(ws) == 1 && ws[0].Errors >= int64(i+1)
		})
	}
	store.SetOutage(nil)
	wait.For(t, 20*time.Second, "the recovery logged", func() bool {
		return strings.Contains(buf.String(), "watch recovered")
	})
	out := buf.String()
	if n := strings.Count(out, "level=WARN"); n != 1 {
		t.Errorf("%d Warn records for one short outage, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "level=DEBUG"); n < 2 {
		t.Errorf("%d Debug records for the retries, want at least 2:\n%s", n, out)
	}
	if n := strings.Count(out, "level=INFO msg=\"wayfinder resolver: watch recovered\""); n != 1 {
		t.Errorf("%d recovery records, want 1:\n%s", n, out)
	}
}
