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
	svc := uniqueService("big")
	reg := be.Open(tb, nil)
	disc := be.Open(tb, nil)
	inst := func(i int) registry.Instance {
		return registry.Instance{ID: fmt.Sprintf("i%05d", i), Service: svc, Address: fmt.Sprintf("127.0.0.%d:%d", 1+i/50000, 10000+i%50000)}
	}
	size := cfg.ScaleSetSize
	if be.sets != nil {
		// A set has one port, as an EndpointSlice does: the instances
		// differ by address.
		inst = func(i int) registry.Instance {
			return registry.Instance{ID: fmt.Sprintf("i%05d", i), Service: svc, Address: fmt.Sprintf("127.%d.%d.%d:50051", 1+i/62500, i/250%250, 1+i%250)}
		}
		if size <= 0 {
			return Sample{}, fmt.Errorf("scale set size %d: want > 0", size)
		}
	}
	nsets := (n + size - 1) / max(size, 1)
	setName := func(k int) string { return fmt.Sprintf("%s-%03d", svc, k) }
	setOf := func(k int, extra ...registry.Instance) []registry.Instance {
		var out []registry.Instance
		for i := k * size; i < min(n, (k+1)*size); i++ {
			out = append(out, inst(i))
		}
		return append(out, extra...)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 { // writing is not what is measured: spread it
		wg.Go(func() {
			if be.sets != nil {
				for k := w; k < nsets; k += 8 {
					if err := be.sets.PutSet(ctx, svc, setName(k), setOf(k)); err != nil {
						errs <- err
						return
					}
				}
				return
			}
			for i := w; i < n; i += 8 {
				if err := register(ctx, reg, inst(i), 10*time.Second); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return Sample{}, err
	}
	h0, g0 := heapAndGoroutines()
	cache := newCache(tb)
	cc := newRecordingCC()
	r, err := resolver.NewBuilder(disc, resolver.WithCache(cache)).Build(gresolver.Target{URL: *mustURL("wayfinder:///" + svc)}, cc, gresolver.BuildOptions{})
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
	extra := inst(n)
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuTime()
	if be.sets != nil {
		extra.Address = fmt.Sprintf("127.%d.%d.%d:50051", 1+n/62500, n/250%250, 1+n%250)
	}
	for it := range 10 {
		k := (it*7 + nsets/2) % nsets // a different set each time
		t0 := time.Now()
		var err error
		if be.sets != nil {
			err = be.sets.PutSet(ctx, svc, setName(k), setOf(k, extra))
		} else {
			err = reg.Register(ctx, extra)
		}
		if err != nil {
			return Sample{}, err
		}
		at, err := cc.waitFor(ctx, 30*time.Second, func(k int) bool { return k == n+1 })
		if err != nil {
			return Sample{}, err
		}
		add = append(add, at.Sub(t0))
		t0 = time.Now()
		if be.sets != nil {
			err = be.sets.PutSet(ctx, svc, setName(k), setOf(k))
		} else {
			err = reg.Deregister(ctx, extra)
		}
		if err != nil {
			return Sample{}, err
		}
		at, err = cc.waitFor(ctx, 30*time.Second, func(k int) bool { return k == n })
		if err != nil {
			return Sample{}, err
		}
		del = append(del, at.Sub(t0))
	}
	cpu := cpuTime() - cpu0
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	updates := float64(len(add) + len(del))
	m := map[string]float64{
		"instances":                 float64(n),
		"process_cpu_ms_per_update": ms(cpu) / updates,
		"allocs_per_update":         float64(ms1.Mallocs-ms0.Mallocs) / updates,
		"alloc_kib_per_update":      float64(ms1.TotalAlloc-ms0.TotalAlloc) / 1024 / updates,
		"first_state_ms":            ms(first),
		"watch_heap_kib":            float64(int64(h1)-int64(h0)) / 1024,
		"watch_goroutines":          float64(g1 - g0),
	}
	putPercentiles(m, "register", add)
	putPercentiles(m, "deregister", del)
	variant := fmt.Sprintf("%d_instances", n)
	if be.sets != nil {
		m["sets"] = float64(nsets)
		variant = fmt.Sprintf("%d_instances_%d_sets", n, nsets)
	}
	return Sample{Variant: variant, Metrics: m}, nil
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
