package harness

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/polling"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// idleLoad counts the requests that cfg.IdleConns idle ClientConns in
// one process, watching cfg.IdleServices services, send to the registry
// over cfg.IdleWindow, after they are all connected. Wayfinder shares one
// upstream watch per service through a resolver.Cache; the baseline is
// the seed's: every ClientConn polls every 500 ms on its own. On Consul,
// a second baseline shares nothing either: one blocking query per
// ClientConn (blockingBuilder); on etcd, so does etcd's own naming
// resolver: one etcd watch per ClientConn (namingBuilder). On etcd the
// watches opened on the server are counted from its gauges, and for
// every variant the heap (after GC) and goroutines that the ClientConns
// add, connected, per ClientConn.
func idleLoad(tb testing.TB, be *Backend, cfg Config) ([]Sample, error) {
	var out []Sample
	variants := []string{"wayfinder", "poll500ms"}
	if be.consulAddr != nil {
		variants = append(variants, "blocking")
	}
	if be.etcd != nil {
		variants = append(variants, namingVariant)
	}
	for _, variant := range variants {
		s, err := idleOne(tb, be, cfg, variant)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", variant, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func idleOne(tb testing.TB, be *Backend, cfg Config, variant string) (Sample, error) {
	ctx := tb.Context()
	reg := be.Open(tb, nil)
	counter := NewCounter()
	disc := be.Open(tb, counter)
	srv := startHello(tb, "idle")
	svcs := make([]string, cfg.IdleServices)
	for i := range svcs {
		svcs[i] = uniqueService("idle")
		if err := register(ctx, reg, registry.Instance{ID: "idle-0", Service: svcs[i], Address: srv.addr}, 10*time.Second); err != nil {
			return Sample{}, err
		}
	}
	v, err := newIdleVariant(tb, be, reg, counter, variant)
	if err != nil {
		return Sample{}, err
	}
	// The registry client connects before the memory is measured, so
	// that its connection is not counted as the ClientConns'.
	if _, err := disc.Lookup(ctx, svcs[0]); err != nil {
		return Sample{}, err
	}
	probe, err := newWatchProbe(ctx, be)
	if err != nil {
		return Sample{}, err
	}
	counter.Reset()
	h0, g0 := heapAndGoroutines()
	shared := newCache(tb)
	if err := v.dialAll(tb, be, disc, shared, svcs, cfg.IdleConns); err != nil {
		return Sample{}, err
	}
	watched, err := probe.read(ctx) // on etcd, once the server's count is steady
	if err != nil {
		return Sample{}, err
	}
	h1, g1 := heapAndGoroutines()
	setup := counter.Total()
	counter.Reset()
	pushes0 := v.pushes()
	t0 := time.Now()
	sleep(ctx, cfg.IdleWindow)
	window := time.Since(t0)
	n := counter.Total()
	m := map[string]float64{
		"setup_requests":                 float64(setup),
		"window_s":                       window.Seconds(),
		"requests":                       float64(n),
		"requests_per_service_min":       float64(n) / float64(len(svcs)) / window.Minutes(),
		"requests_per_service_min_upper": float64(max(n, 1)) / float64(len(svcs)) / window.Minutes(),
		"client_conns":                   float64(cfg.IdleConns),
		"services":                       float64(len(svcs)),
		"heap_kib_per_conn":              float64(int64(h1)-int64(h0)) / 1024 / float64(cfg.IdleConns),
		"goroutines_per_conn":            float64(g1-g0) / float64(cfg.IdleConns),
	}
	probe.put(m, watched, len(svcs))
	v.putWatches(m, shared, len(svcs), pushes0)
	if err := resolversAlone(ctx, be, variant, disc, v.naming, svcs, cfg.IdleConns, m); err != nil {
		return Sample{}, err
	}
	return Sample{Variant: variant, Metrics: m, Notes: variantNotes(variant)}, nil
}

// idleVariant is how one variant of idleLoad resolves: through Wayfinder
// (a shared cache), the seed's poller, a blocking query per ClientConn
// (blocking) or etcd's naming resolver (naming).
type idleVariant struct {
	name     string
	blocking *blockingBuilder // for "blocking"
	naming   *namingBuilder   // for namingVariant
}

func newIdleVariant(tb testing.TB, be *Backend, reg registry.Registry, counter *Counter, variant string) (*idleVariant, error) {
	v := &idleVariant{name: variant}
	var err error
	switch variant {
	case "blocking":
		if v.blocking, err = newBlockingBuilder(be.consulAddr(tb, counter), consul.DefaultWait); err != nil {
			return nil, err
		}
	case namingVariant:
		if v.naming, err = newNamingBuilder(tb, be, reg, counter); err != nil {
			return nil, err
		}
		if err := v.naming.warm(tb.Context()); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// dialAll dials conns ClientConns, spread over svcs, and makes one call
// on each.
func (v *idleVariant) dialAll(tb testing.TB, be *Backend, disc registry.Discovery, shared *resolver.Cache, svcs []string, conns int) error {
	var clients []hellopb.HelloServiceClient
	for i := range conns {
		var d registry.Discovery = disc
		cache := shared
		var c hellopb.HelloServiceClient
		switch v.name {
		case "blocking":
			_, c = dialBlocking(tb, v.blocking, svcs[i%len(svcs)])
		case namingVariant:
			_, c = dialNaming(tb, v.naming, svcs[i%len(svcs)])
		case "poll500ms":
			d = polling.New(disc, 500*time.Millisecond)
			cache = newCache(tb) // the seed shared nothing
			fallthrough
		default:
			_, c = dial(tb, d, cache, svcs[i%len(svcs)], "round_robin", be.dialOpts...)
		}
		clients = append(clients, c)
	}
	for _, c := range clients {
		if _, err := call(tb.Context(), c, 20*time.Second, grpc.WaitForReady(true)); err != nil {
			return fmt.Errorf("warm-up call: %w", err)
		}
	}
	return nil
}

// pushes is how many states the baseline's resolvers have pushed to
// gRPC so far, or 0 for a variant that does not count them.
func (v *idleVariant) pushes() int64 {
	switch {
	case v.blocking != nil:
		return v.blocking.pushes.Load()
	case v.naming != nil:
		return v.naming.pushes.Load()
	}
	return 0
}

// putWatches adds to m the upstream watches that the variant's
// ClientConns hold on nsvcs services, and the states pushed since
// pushes0.
func (v *idleVariant) putWatches(m map[string]float64, shared *resolver.Cache, nsvcs int, pushes0 int64) {
	if v.naming != nil {
		// Each resolver holds one etcd watch: those the server counts.
		m["upstream_watches"] = m["server_watchers"]
		m["watches_per_service"] = m["server_watchers_per_service"]
		m["resolvers"] = float64(v.naming.open.Load())
		m["pushes_in_window"] = float64(v.naming.pushes.Load() - pushes0)
	}
	if v.blocking != nil {
		// Each resolver holds one blocking query open.
		m["upstream_watches"] = float64(v.blocking.open.Load())
		m["watches_per_service"] = float64(v.blocking.open.Load()) / float64(nsvcs)
		m["pushes_in_window"] = float64(v.blocking.pushes.Load() - pushes0)
	}
	if v.name == "wayfinder" {
		st := shared.Stats()
		m["upstream_watches"] = float64(st.Watches)
		m["upstream_watch_calls"] = float64(st.Upstreams)
		m["watches_per_service"] = float64(st.Watches) / float64(nsvcs)
		var res int
		for _, w := range shared.Watches() {
			res += w.Resolvers
		}
		m["resolvers"] = float64(res)
	}
}
