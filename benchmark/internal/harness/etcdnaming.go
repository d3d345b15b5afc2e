package harness

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	etcdresolver "go.etcd.io/etcd/client/v3/naming/resolver"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	gresolver "google.golang.org/grpc/resolver"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// namingVariant is the variant name of etcd's own naming resolver, the
// alternative an etcd user would pick instead of Wayfinder's resolver.
const namingVariant = "etcd_naming"

// namingModule is the Go module of etcd's naming resolver.
const namingModule = "go.etcd.io/etcd/client/v3"

// namingBuilder is etcd's own gRPC resolver
// (go.etcd.io/etcd/client/v3/naming/resolver), set up as etcd documents
// it: one clientv3.Client for the process and resolver.NewBuilder(cli),
// passed to every ClientConn with grpc.WithResolvers. Its resolver, per
// ClientConn, lists the key prefix <target>/ (one Range) and then
// watches it from the next revision (one etcd watch per ClientConn, all
// multiplexed on the client's one Watch stream), and hands gRPC the
// whole set after every batch of events. It reads Wayfinder's
// registrations because Wayfinder's etcd driver writes etcd's naming
// values (etcd.FormatNaming, the default) at <prefix>/<service>/<id>:
// the target of service svc is prefix + "/" + svc, which for the default
// prefix /wayfinder/services is "etcd:////wayfinder/services/<svc>"
// (etcd's resolver drops the path's first slash, so the watched prefix is
// "/wayfinder/services/<svc>/").
//
// The wrapper only counts: the resolvers open and their UpdateState
// calls. It changes nothing they do.
type namingBuilder struct {
	gresolver.Builder
	cli    *clientv3.Client
	prefix string       // the Wayfinder registry's key prefix
	open   atomic.Int64 // resolvers running
	pushes atomic.Int64 // UpdateState calls
}

// newNamingBuilder returns etcd's naming resolver over a new client of
// be's etcd member, closed with tb, for the services that reg (a
// Wayfinder etcd registry of the same member) registers. If c is not nil,
// the client's requests are counted in c as those of Wayfinder's etcd
// client are (Counter.dialOptions).
func newNamingBuilder(tb testing.TB, be *Backend, reg registry.Registry, c *Counter) (*namingBuilder, error) {
	if be.etcd == nil {
		return nil, fmt.Errorf("bench: backend %s has no etcd member for etcd's naming resolver", be.Name)
	}
	p, ok := reg.(interface{ Prefix() string })
	if !ok {
		return nil, fmt.Errorf("bench: %T has no key prefix for etcd's naming resolver", reg)
	}
	cfg := clientv3.Config{
		Endpoints:   []string{be.etcd.ClientAddr},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	}
	if c != nil {
		cfg.DialOptions = c.dialOptions()
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("bench: etcd client: %w", err)
	}
	// Registered before any ClientConn's, so it runs after theirs.
	tb.Cleanup(func() { cli.Close() })
	b, err := etcdresolver.NewBuilder(cli)
	if err != nil {
		return nil, err
	}
	return &namingBuilder{Builder: b, cli: cli, prefix: p.Prefix()}, nil
}

// target returns the etcd naming target of service svc.
func (b *namingBuilder) target(svc string) string {
	return b.Scheme() + ":///" + b.prefix + "/" + svc
}

// warm makes the client connect, with one request, so that the
// connection is not counted as any ClientConn's memory.
func (b *namingBuilder) warm(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := b.cli.Get(ctx, b.prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	return err
}

func (b *namingBuilder) Build(t gresolver.Target, cc gresolver.ClientConn, opts gresolver.BuildOptions) (gresolver.Resolver, error) {
	r, err := b.Builder.Build(t, &countingCC{ClientConn: cc, pushes: &b.pushes}, opts)
	if err != nil {
		return nil, err
	}
	b.open.Add(1)
	return &namingResolver{Resolver: r, open: &b.open}, nil
}

type countingCC struct {
	gresolver.ClientConn
	pushes *atomic.Int64
}

func (c *countingCC) UpdateState(s gresolver.State) error {
	c.pushes.Add(1)
	return c.ClientConn.UpdateState(s)
}

type namingResolver struct {
	gresolver.Resolver
	open *atomic.Int64
	once sync.Once
}

func (r *namingResolver) Close() {
	r.Resolver.Close()
	r.once.Do(func() { r.open.Add(-1) })
}

// dialNaming returns a ClientConn for svc through etcd's naming
// resolver b, with round_robin as Wayfinder's ClientConns have, closed
// with tb.
func dialNaming(tb testing.TB, b *namingBuilder, svc string) (*grpc.ClientConn, hellopb.HelloServiceClient) {
	tb.Helper()
	cc, err := grpc.NewClient(b.target(svc),
		grpc.WithResolvers(b),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		tb.Fatalf("bench: NewClient(%q): %v", b.target(svc), err)
	}
	tb.Cleanup(func() { cc.Close() })
	return cc, hellopb.NewHelloServiceClient(cc)
}

// namingVersion returns the version of etcd's client module in this
// binary, or "" if the binary does not say.
func namingVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range bi.Deps {
		if d.Path == namingModule {
			if d.Replace != nil {
				d = d.Replace
			}
			return d.Version
		}
	}
	return ""
}

// etcdWatchMetrics are the etcd server's gauges of open watches.
const (
	watcherGauge = "etcd_debugging_mvcc_watcher_total"      // watches open on the server
	streamGauge  = "etcd_debugging_mvcc_watch_stream_total" // Watch streams (gRPC streams carrying them)
)

// readWatchGauges reads the watcher and watch stream gauges from an etcd
// member's /metrics.
func readWatchGauges(ctx context.Context, metricsURL string) (watchers, streams float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("etcd metrics: %s", resp.Status)
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || (name != watcherGauge && name != streamGauge) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("etcd metrics: %s: %w", name, err)
		}
		if name == watcherGauge {
			watchers = v
		} else {
			streams = v
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("etcd metrics: %s or %s missing", watcherGauge, streamGauge)
	}
	return watchers, streams, nil
}

// watchProbe counts the watches that ClientConns open on an etcd
// member: the server's gauges after, less before. A nil probe (any
// backend but etcd) counts nothing.
type watchProbe struct {
	url                 string
	watchers0, streams0 float64
}

// newWatchProbe reads the gauges once they are steady, or returns nil
// if be is not etcd.
func newWatchProbe(ctx context.Context, be *Backend) (*watchProbe, error) {
	if be.etcd == nil {
		return nil, nil
	}
	p := &watchProbe{url: be.etcd.MetricsURL}
	var err error
	p.watchers0, p.streams0, err = steadyWatchGauges(ctx, p.url)
	return p, err
}

// watchCount is a steady read of the server's gauges.
type watchCount struct{ watchers, streams float64 }

// read returns the gauges once they are steady; on a nil probe, zero.
func (p *watchProbe) read(ctx context.Context) (watchCount, error) {
	if p == nil {
		return watchCount{}, nil
	}
	w, s, err := steadyWatchGauges(ctx, p.url)
	return watchCount{w, s}, err
}

// put adds to m the watches open at c that were not when the probe
// started, in all and per service.
func (p *watchProbe) put(m map[string]float64, c watchCount, services int) {
	if p == nil {
		return
	}
	m["server_watchers"] = c.watchers - p.watchers0
	m["server_watchers_per_service"] = (c.watchers - p.watchers0) / float64(services)
	m["server_watch_streams"] = c.streams - p.streams0
}

// resolversAlone adds to m, on etcd and for Wayfinder's resolver and
// etcd's naming resolver, the heap (after GC) and goroutines that n
// resolvers for svcs (in turn) add on fake ClientConns once each has its
// first state and the server has their watches: the resolvers' share of
// a ClientConn's cost, as scale.go measures Wayfinder's resolvers alone.
// Wayfinder's get a Cache of their own, so their watches are new too.
func resolversAlone(ctx context.Context, be *Backend, variant string, disc registry.Discovery, naming *namingBuilder, svcs []string, n int, m map[string]float64) error {
	if be.etcd == nil || (variant != "wayfinder" && variant != namingVariant) {
		return nil
	}
	var b gresolver.Builder
	target := func(svc string) string { return "wayfinder:///" + svc }
	if naming != nil {
		b, target = naming, naming.target
	} else {
		cache := resolver.NewCache(resolver.WithLinger(0))
		defer cache.Close() // after the resolvers
		b = resolver.NewBuilder(disc, resolver.WithCache(cache))
	}
	probe, err := newWatchProbe(ctx, be)
	if err != nil {
		return err
	}
	h0, g0 := heapAndGoroutines()
	var ccs []*recordingCC
	for i := range n {
		cc := newRecordingCC()
		r, err := b.Build(gresolver.Target{URL: *mustURL(target(svcs[i%len(svcs)]))}, cc, gresolver.BuildOptions{})
		if err != nil {
			return err
		}
		defer r.Close()
		ccs = append(ccs, cc)
	}
	for _, cc := range ccs {
		if _, err := cc.waitFor(ctx, 30*time.Second, func(k int) bool { return k == 1 }); err != nil {
			return err
		}
	}
	c, err := probe.read(ctx)
	if err != nil {
		return err
	}
	h1, g1 := heapAndGoroutines()
	m["resolver_heap_kib_per_conn"] = float64(int64(h1)-int64(h0)) / 1024 / float64(n)
	m["resolver_goroutines_per_conn"] = float64(g1-g0) / float64(n)
	m["resolver_server_watchers"] = c.watchers - probe.watchers0
	return nil
}

// steadyWatchGauges reads the gauges until three reads 100 ms apart
// agree, for up to 10 s (a watch is created on the server a moment after
// the resolver that asked for it is built), and returns the last read.
func steadyWatchGauges(ctx context.Context, url string) (watchers, streams float64, err error) {
	deadline := time.Now().Add(10 * time.Second)
	same := 0
	var lw, ls float64
	for first := true; ; first = false {
		w, s, err := readWatchGauges(ctx, url)
		if err != nil {
			return 0, 0, err
		}
		if !first && w == lw && s == ls {
			same++
		} else {
			same = 0
		}
		lw, ls = w, s
		if same == 2 || time.Now().After(deadline) || ctx.Err() != nil {
			return w, s, nil
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// variantNotes returns the notes that a sample of variant carries: for
// etcd's naming resolver, the version of its module that was measured.
func variantNotes(variant string) []string {
	if variant != namingVariant {
		return nil
	}
	if v := namingVersion(); v != "" {
		return []string{namingModule + " " + v}
	}
	return nil
}

// namingRatios are the figures of etcd's naming resolver and Wayfinder
// compared in section 9 and its chart: scenario, metric, label, unit.
var namingRatios = []struct {
	group, scenario, metric, label, short, unit string
}{
	{"propagation", "propagation", "register_p50_ms", "register → picker, p50", "register p50", "ms"},
	{"propagation", "propagation", "register_p99_ms", "register → picker, p99", "register p99", "ms"},
	{"propagation", "propagation", "deregister_p50_ms", "deregister → picker, p50", "deregister p50", "ms"},
	{"propagation", "propagation", "deregister_p99_ms", "deregister → picker, p99", "deregister p99", "ms"},
	{"propagation", "propagation", "all_p50_ms", "all changes, p50", "all p50", "ms"},
	{"propagation", "propagation", "all_p99_ms", "all changes, p99", "all p99", "ms"},
	{"registry", "idle_load", "server_watchers_per_service", "watches on etcd per service", "watches per service", ""},
	{"registry", "idle_load", "server_watch_streams", "Watch streams on etcd", "Watch streams", ""},
	{"registry", "idle_load", "requests_per_service_min", "requests at rest per service per minute", "requests at rest", ""},
	{"registry", "idle_load", "setup_requests", "requests to connect the ClientConns", "set-up requests", ""},
	{"client", "idle_load", "heap_kib_per_conn", "heap per connected ClientConn", "heap/ClientConn", "KiB"},
	{"client", "idle_load", "goroutines_per_conn", "goroutines per connected ClientConn", "goroutines/ClientConn", ""},
	{"client", "idle_load", "resolver_heap_kib_per_conn", "heap per resolver alone", "heap/resolver", "KiB"},
	{"client", "idle_load", "resolver_goroutines_per_conn", "goroutines per resolver alone", "goroutines/resolver", ""},
}

// etcdNamingChart draws etcd's naming resolver's figures as multiples
// of Wayfinder's from the same run; ok is false if neither was measured.
func (r *Report) etcdNamingChart() (string, bool) {
	var groups []barGroup
	for _, g := range []struct{ key, label string }{
		{"propagation", "picker"},
		{"registry", "etcd"},
		{"client", "client"},
	} {
		var bars []bar
		for _, q := range namingRatios {
			if q.group != g.key {
				continue
			}
			a, okA := r.get(q.scenario, "etcd", namingVariant, q.metric)
			x, okX := r.get(q.scenario, "etcd", "wayfinder", q.metric)
			if !okA || !okX || a <= 0 || x <= 0 {
				continue // a ratio of nothing seen, or of noise below zero, says nothing
			}
			bars = append(bars, bar{Label: q.short, Value: a / x, Text: fmt.Sprintf("%.2f× (%s / %s%s)", a/x, fmtNum(a), fmtNum(x), unitSuffix(q.unit))})
		}
		if len(bars) > 0 {
			groups = append(groups, barGroup{Label: g.label, Bars: bars})
		}
	}
	if len(groups) == 0 {
		return "", false
	}
	return barChart("etcd's naming resolver as a multiple of Wayfinder's, same etcd, same run",
		"etcd naming ÷ Wayfinder (dashed line = 1; above it costs more or takes longer)", true, 1, groups), true
}

func unitSuffix(u string) string {
	if u == "" {
		return ""
	}
	return " " + u
}

// etcdNamingSection renders section 9: etcd's own naming resolver
// against Wayfinder's, on the same etcd member in the same run.
func (r *Report) etcdNamingSection(w func(string, ...any), img func(name, alt string)) {
	w("## 9. Against etcd's own naming resolver\n\n")
	res, ok := r.Find("idle_load", "etcd", namingVariant)
	prop, okP := r.Find("propagation", "etcd", namingVariant)
	if !ok && !okP {
		w("Not measured in this report's runs: run `make bench`, or `wfbench -backends etcd -scenarios propagation,idle_load -merge`.\n\n")
		return
	}
	version := namingModule
	for _, n := range append(res.Notes, prop.Notes...) {
		if strings.HasPrefix(n, namingModule+" ") {
			version = n
			break
		}
	}
	w("**The alternative.** `go.etcd.io/etcd/client/v3/naming/resolver` (%s), the gRPC resolver that etcd ships and documents: what an etcd user would pick instead of Wayfinder's resolver. For each ClientConn it lists the key prefix `<target>/` once and then follows it with an etcd watch of its own (the watches of one client share its gRPC Watch stream, but each is a watcher on the server), and hands gRPC the whole set after every batch of events. It shares nothing across ClientConns and has no retry of its own: from its source, once its watch ends with an error (a revision compacted away, for example), its goroutine returns and the ClientConn keeps its last addresses with no further updates; that is not measured here (the outage scenario runs Wayfinder only).\n\n", version)
	w("**How it was configured.** As etcd documents it: one `clientv3.Client` for the process (the member's endpoint, a 5 s dial timeout, nothing else), `resolver.NewBuilder(cli)` passed to every ClientConn with `grpc.WithResolvers`, and `round_robin`, as Wayfinder's ClientConns have. Wayfinder's etcd driver writes etcd's naming value (`etcd.FormatNaming`, the default) at `<prefix>/<service>/<id>`, so etcd's resolver reads the same registrations, written by the same Wayfinder registrar: the target of service `<svc>` is `etcd:///` + prefix + `/<svc>`, with the default prefix `etcd:////wayfinder/services/<svc>`, which watches `/wayfinder/services/<svc>/` (etcd's resolver drops the path's first slash). The same etcd member, servers and changes as Wayfinder's variant, in the same run (sections 1 and 2); its requests are counted by the same client interceptors as Wayfinder's etcd client's. Watches are counted on the server: the change in `%s` (and `%s`) on the member's `/metrics`, read once steady, from before the ClientConns are dialled to after they are connected. Memory is the heap after GC and the goroutines that the %d ClientConns add once connected (gRPC's own share included, the same for both), and the same for %d resolvers alone on fake ClientConns (Wayfinder's with a Cache of their own), each with its first state, as section 8 measures Wayfinder's.\n\n",
		watcherGauge, streamGauge, r.Config.IdleConns, r.Config.IdleConns)
	img("etcd_naming.svg", "etcd naming resolver against Wayfinder chart")
	w("| %d ClientConns, %d services, etcd | Wayfinder | etcd naming resolver | etcd naming ÷ Wayfinder |\n|---|---|---|---|\n", r.Config.IdleConns, r.Config.IdleServices)
	for _, q := range namingRatios {
		x, okX := r.get(q.scenario, "etcd", "wayfinder", q.metric)
		a, okA := r.get(q.scenario, "etcd", namingVariant, q.metric)
		if !okX && !okA {
			continue
		}
		ratio := "—"
		if okX && okA && x > 0 && a > 0 {
			ratio = fmt.Sprintf("%.2f×", a/x)
		}
		val := func(variant string, v float64, ok bool) string {
			if !ok {
				return "—"
			}
			if q.metric == "requests_per_service_min" && v == 0 {
				// None seen: an upper bound, not a figure to divide by.
				return "< " + fmtNum(r.metricOr(q.scenario, "etcd", variant, "requests_per_service_min_upper")) + " (0 seen)"
			}
			return fmtNum(v) + unitSuffix(q.unit)
		}
		w("| %s | %s | %s | %s |\n", q.label, val("wayfinder", x, okX), val(namingVariant, a, okA), ratio)
	}
	w("\n")
	if ok {
		n, _ := r.get("idle_load", "etcd", "wayfinder", "requests")
		win := res.Metrics["window_s"]
		w("At rest for %s s, Wayfinder sent %s requests and etcd's resolver %s; etcd's resolver pushed %s states to gRPC in the window. Wayfinder's requests at rest are its liveness probe: one count-only Range per process (not per service or ClientConn) once its watches have heard nothing from etcd for half of `WithUnavailableAfter`'s bound (10 s by default), so that a silent or frozen member is reported as unavailable even while gRPC still sees the connection as ready; etcd's resolver, configured as above, sends nothing at rest and has no such bound. Wayfinder holds %s watches on etcd for %s services; etcd's resolver holds %s, one per ClientConn, and etcd sends each change once per watch.\n\n",
			fmtNum(win), fmtNum(n), fmtNum(res.Metrics["requests"]), fmtNum(res.Metrics["pushes_in_window"]),
			fmtNum(r.metricOr("idle_load", "etcd", "wayfinder", "server_watchers")), fmtNum(res.Metrics["services"]), fmtNum(res.Metrics["server_watchers"]))
	}
}

// metricOr returns a median metric, or 0 if it was not measured.
func (r *Report) metricOr(scenario, backend, variant, metric string) float64 {
	v, _ := r.get(scenario, backend, variant, metric)
	return v
}
