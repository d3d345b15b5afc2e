package bench

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
