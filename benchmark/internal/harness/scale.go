package harness

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// scale measures two sizes on one backend:
//
//   - cfg.ScaleServices services, one instance each, watched by one
//     process: one ClientConn per service through one Cache, every one
//     connected. It reports heap and goroutines per watched service, with
//     the ClientConns and for the Wayfinder resolvers alone, and the time
//     from a Register to a call reaching the new instance of one of them.
//   - one service with cfg.ScaleInsts instances: the time from a Register
//     or Deregister to the resolver's UpdateState carrying the new set.
//     The instances' addresses do not listen (thousands of servers do not
//     fit the machine), so this is measured at the resolver's ClientConn,
//     not through a picker; it also reports the process's CPU time and
//     allocations per update (on the memory backend these include the
//     in-process registry). What an update costs the policy, up to the
//     picker, is the picker scenario's BenchmarkUpdate.
//
// On a backend with a SetWriter (Kubernetes) only the second size runs,
// with the service written in sets of cfg.ScaleSetSize (5,000 endpoints
// in 50 EndpointSlices of 100) and each change rewriting one set with one
// instance more, then without it, a different set each time.
func scale(tb testing.TB, be *Backend, cfg Config) ([]Sample, error) {
	if be.sets != nil {
		big, err := scaleInstances(tb, be, cfg)
		if err != nil {
			return nil, fmt.Errorf("instances: %w", err)
		}
		return []Sample{big}, nil
	}
	many, err := scaleServices(tb, be, cfg)
	if err != nil {
		return nil, fmt.Errorf("services: %w", err)
	}
	big, err := scaleInstances(tb, be, cfg)
	if err != nil {
		return nil, fmt.Errorf("instances: %w", err)
	}
	return []Sample{many, big}, nil
}

func heapAndGoroutines() (uint64, int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, runtime.NumGoroutine()
}

func scaleServices(tb testing.TB, be *Backend, cfg Config) (Sample, error) {
	ctx := tb.Context()
	n := cfg.ScaleServices
	reg := be.Open(tb, nil)
	disc := be.Open(tb, nil)
	a, b := startHello(tb, "a"), startHello(tb, "b")
	svcs := make([]string, n)
	for i := range svcs {
		svcs[i] = uniqueService("scale")
		if err := register(ctx, reg, registry.Instance{ID: "a", Service: svcs[i], Address: a.addr}, 10*time.Second); err != nil {
			return Sample{}, err
		}
	}

	// The resolvers alone, on a fake ClientConn.
	h0, g0 := heapAndGoroutines()
	cache := resolver.NewCache(resolver.WithLinger(0))
	builder := resolver.NewBuilder(disc, resolver.WithCache(cache))
	var rs []gresolver.Resolver
	var ccs []*recordingCC
	for _, s := range svcs {
		cc := newRecordingCC()
		r, err := builder.Build(gresolver.Target{URL: *mustURL("wayfinder:///" + s)}, cc, gresolver.BuildOptions{})
		if err != nil {
			return Sample{}, err
		}
		rs = append(rs, r)
		ccs = append(ccs, cc)
	}
	for _, cc := range ccs {
		if _, err := cc.waitFor(ctx, 30*time.Second, func(n int) bool { return n == 1 }); err != nil {
			return Sample{}, err
		}
	}
	h1, g1 := heapAndGoroutines()
	for _, r := range rs {
		r.Close()
	}
	cache.Close()

	// Real ClientConns, every one connected.
	h2, g2 := heapAndGoroutines()
	shared := resolver.NewCache(resolver.WithLinger(0))
	var clients []hellopb.HelloServiceClient
	var conns []*grpc.ClientConn
	for _, s := range svcs {
		cc, c := dialNoCleanup(tb, disc, shared, s)
		conns = append(conns, cc)
		clients = append(clients, c)
	}
	defer func() {
		for _, cc := range conns {
			cc.Close()
		}
		shared.Close()
	}()
	for _, c := range clients {
		if _, err := call(ctx, c, 30*time.Second, grpc.WaitForReady(true)); err != nil {
			return Sample{}, err
		}
	}
	h3, g3 := heapAndGoroutines()

	// Propagation at that size, on one of the services.
	mid := n / 2
	in := registry.Instance{ID: "b", Service: svcs[mid], Address: b.addr}
	var add, del []time.Duration
	for range 10 {
		t0 := time.Now()
		if err := reg.Register(ctx, in); err != nil {
			return Sample{}, err
		}
		d, err := until(ctx, clients[mid], t0, func(s string) bool { return s == "b" }, 1)
		if err != nil {
			return Sample{}, err
		}
		add = append(add, d)
		t0 = time.Now()
		if err := reg.Deregister(ctx, in); err != nil {
			return Sample{}, err
		}
		d, err = until(ctx, clients[mid], t0, func(s string) bool { return s != "b" }, 4)
		if err != nil {
			return Sample{}, err
		}
		del = append(del, d)
	}
	m := map[string]float64{
		"services":                          float64(n),
		"resolver_heap_kib_per_service":     float64(int64(h1)-int64(h0)) / 1024 / float64(n),
		"resolver_goroutines_per_service":   float64(g1-g0) / float64(n),
		"clientconn_heap_kib_per_service":   float64(int64(h3)-int64(h2)) / 1024 / float64(n),
		"clientconn_goroutines_per_service": float64(g3-g2) / float64(n),
	}
	putPercentiles(m, "register", add)
	putPercentiles(m, "deregister", del)
	return Sample{Variant: fmt.Sprintf("%d_services", n), Metrics: m}, nil
}

func dialNoCleanup(tb testing.TB, d registry.Discovery, cache *resolver.Cache, svc string) (*grpc.ClientConn, hellopb.HelloServiceClient) {
	tb.Helper()
	cc, c := dial(nopCleanup{tb}, d, cache, svc, "round_robin")
	return cc, c
}

// nopCleanup drops Cleanup registrations: the caller closes.
type nopCleanup struct{ testing.TB }

func (nopCleanup) Cleanup(func()) {}

func scaleInstances(tb testing.TB, be *Backend, cfg Config) (Sample, error) {
	ctx := tb.Context()
	n := cfg.ScaleInsts
	big := &bigService{be: be, svc: uniqueService("big"), n: n, size: cfg.ScaleSetSize}
	big.reg = be.Open(tb, nil)
	disc := be.Open(tb, nil)
	if be.sets != nil && big.size <= 0 {
		return Sample{}, fmt.Errorf("scale set size %d: want > 0", big.size)
	}
	big.nsets = (n + big.size - 1) / max(big.size, 1)
	if err := big.writeAll(ctx); err != nil {
		return Sample{}, err
	}

	h0, g0 := heapAndGoroutines()
	cache := newCache(tb)
	cc := newRecordingCC()
	r, err := resolver.NewBuilder(disc, resolver.WithCache(cache)).Build(gresolver.Target{URL: *mustURL("wayfinder:///" + big.svc)}, cc, gresolver.BuildOptions{})
	if err != nil {
		return Sample{}, err
	}
	defer r.Close()
	t0 := time.Now()
	if _, err := cc.waitFor(ctx, 60*time.Second, func(k int) bool { return k == n }); err != nil {
		return Sample{}, err
	}
	first := time.Since(t0)
	h1, g1 := heapAndGoroutines()

	var add, del []time.Duration
	extra := big.instance(n)
	var cost changeCost
	if err := cost.add(func() error {
		var err error
		add, del, err = big.changes(ctx, cc, extra)
		return err
	}); err != nil {
		return Sample{}, err
	}
	updates := float64(len(add) + len(del))
	m := map[string]float64{
		"instances":                 float64(n),
		"process_cpu_ms_per_update": ms(cost.cpu) / updates,
		"allocs_per_update":         float64(cost.mallocs) / updates,
		"alloc_kib_per_update":      float64(cost.bytes) / 1024 / updates,
		"first_state_ms":            ms(first),
		"watch_heap_kib":            float64(int64(h1)-int64(h0)) / 1024,
		"watch_goroutines":          float64(g1 - g0),
	}
	putPercentiles(m, "register", add)
	putPercentiles(m, "deregister", del)
	variant := fmt.Sprintf("%d_instances", n)
	if be.sets != nil {
		m["sets"] = float64(big.nsets)
		variant = fmt.Sprintf("%d_instances_%d_sets", n, big.nsets)
	}
	return Sample{Variant: variant, Metrics: m}, nil
}

// bigService is the one service of scaleInstances: n instances whose
// addresses do not listen, registered one by one or, on a backend that
// writes sets (be.sets), in nsets sets of size, as the EndpointSlice
// controller writes them.
type bigService struct {
	be          *Backend
	reg         registry.Registry
	svc         string
	n           int
	size, nsets int
}

func (b *bigService) instance(i int) registry.Instance {
	if b.be.sets != nil {
		// A set has one port, as an EndpointSlice does: the instances
		// differ by address.
		return registry.Instance{ID: fmt.Sprintf("i%05d", i), Service: b.svc, Address: fmt.Sprintf("127.%d.%d.%d:50051", 1+i/62500, i/250%250, 1+i%250)}
	}
	return registry.Instance{ID: fmt.Sprintf("i%05d", i), Service: b.svc, Address: fmt.Sprintf("127.0.0.%d:%d", 1+i/50000, 10000+i%50000)}
}

func (b *bigService) setName(k int) string { return fmt.Sprintf("%s-%03d", b.svc, k) }

// set returns the instances of set k, and extra.
func (b *bigService) set(k int, extra ...registry.Instance) []registry.Instance {
	var out []registry.Instance
	for i := k * b.size; i < min(b.n, (k+1)*b.size); i++ {
		out = append(out, b.instance(i))
	}
	return append(out, extra...)
}

// writeAll writes the n instances, from 8 goroutines: writing is not
// what is measured.
func (b *bigService) writeAll(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			if b.be.sets != nil {
				for k := w; k < b.nsets; k += 8 {
					if err := b.be.sets.PutSet(ctx, b.svc, b.setName(k), b.set(k)); err != nil {
						errs <- err
						return
					}
				}
				return
			}
			for i := w; i < b.n; i += 8 {
				if err := register(ctx, b.reg, b.instance(i), 10*time.Second); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// changes adds extra and removes it again, 10 times, each time in a
// different set on a backend with sets, and returns how long each took
// to reach the resolver's ClientConn cc.
func (b *bigService) changes(ctx context.Context, cc *recordingCC, extra registry.Instance) (add, del []time.Duration, err error) {
	n := b.n
	for it := range 10 {
		k := (it*7 + b.nsets/2) % b.nsets // a different set each time
		t0 := time.Now()
		if b.be.sets != nil {
			err = b.be.sets.PutSet(ctx, b.svc, b.setName(k), b.set(k, extra))
		} else {
			err = b.reg.Register(ctx, extra)
		}
		if err != nil {
			return nil, nil, err
		}
		var at time.Time
		at, err = cc.waitFor(ctx, 30*time.Second, func(k int) bool { return k == n+1 })
		if err != nil {
			return nil, nil, err
		}
		add = append(add, at.Sub(t0))
		t0 = time.Now()
		if b.be.sets != nil {
			err = b.be.sets.PutSet(ctx, b.svc, b.setName(k), b.set(k))
		} else {
			err = b.reg.Deregister(ctx, extra)
		}
		if err != nil {
			return nil, nil, err
		}
		at, err = cc.waitFor(ctx, 30*time.Second, func(k int) bool { return k == n })
		if err != nil {
			return nil, nil, err
		}
		del = append(del, at.Sub(t0))
	}
	return add, del, nil
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// recordingCC is a resolver.ClientConn that keeps the size of each state
// it is given, with the time, and wakes waiters.
type recordingCC struct {
	mu      sync.Mutex
	sizes   []int
	times   []time.Time
	changed chan struct{}
}

func newRecordingCC() *recordingCC { return &recordingCC{changed: make(chan struct{})} }

func (c *recordingCC) UpdateState(s gresolver.State) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sizes = append(c.sizes, len(s.Endpoints))
	c.times = append(c.times, time.Now())
	close(c.changed)
	c.changed = make(chan struct{})
	return nil
}

func (c *recordingCC) ReportError(error)              {}
func (c *recordingCC) NewAddress([]gresolver.Address) {}
func (c *recordingCC) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{}
}

// waitFor waits until the latest state's size satisfies ok and returns
// when that state arrived.
func (c *recordingCC) waitFor(ctx context.Context, d time.Duration, ok func(int) bool) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		c.mu.Lock()
		ch := c.changed
		if k := len(c.sizes); k > 0 && ok(c.sizes[k-1]) {
			at := c.times[k-1]
			c.mu.Unlock()
			return at, nil
		}
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("resolver state not reached within %v", d)
		}
	}
}
