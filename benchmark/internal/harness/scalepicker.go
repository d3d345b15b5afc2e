package harness

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	"github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// scalePolicies are the policies scalePicker runs, one after the other:
// grpc's round_robin, and Wayfinder's P2C, which the report compares
// with it everywhere else.
//
// How a picker is checked differs. round_robin's picker cycles through
// its ready endpoints, so n picks from a picker of n see every one, and
// show whether an endpoint is in it. P2C's draws two endpoints at random
// and takes the less loaded, so whether picks find an endpoint depends
// on the loads: a new endpoint starts at its peers' mean cost, and
// loses every draw against peers that are cheaper. So P2C's inclusion
// is checked in the policy's own view (balancer/inspect: the endpoints
// its last picker was built from, with their states); its exclusion
// both there and by 16(n+1) picks that must not return the endpoint.
var scalePolicies = []struct {
	name   string
	cycles bool // n picks see each of n ready endpoints
}{
	{"round_robin", true},
	{p2c.Name, false},
}

// scalePicker measures one service with cfg.ScaleInsts instances that
// really serve, end to end, through one real ClientConn per policy of
// scalePolicies, one policy at a time.
//
// The instances are one gRPC server (HelloService and health) serving
// on cfg.ScaleInsts listeners on 127.0.0.1:0, each registered as its
// own instance; one more instance is a server of its own. The
// ClientConn runs the policy under a probe (probeName), which sees the
// resolver's states, each SubConn's health-aware READY and shutdown,
// and each picker gRPC is given. A SubConn is usable from its health
// listener's READY, which makes pick_first publish its picker and the
// policy (endpointsharding) a new one at once; a SubConn shut down is
// out of the next picker the policy publishes. So the first picker
// published after those events is the one that includes or excludes
// the endpoint; picking from it checks that. For each policy it
// measures:
//
//   - the first full state: from dialling (NewClient and Connect) to the
//     resolver's first state, to every SubConn healthy and READY, and
//     to the first picker published after that; the process's CPU time
//     over it; and the heap (after GC) and goroutines this added, both
//     ends of every connection included, as the servers are in the
//     process;
//   - cfg.ScaleChanges times: Register of the extra instance until the
//     resolver's state with it, and until the first picker published
//     after its SubConn became healthy and READY; then Deregister until
//     the resolver's state without it, and until the first picker
//     published after its SubConn was shut down. Each of those pickers
//     is checked (scalePolicies says how); on the
//     first change real calls check it too: calls reach the instance,
//     then a streak of calls does not. The process's CPU time and
//     allocations per change are counted from just before Register or
//     Deregister until the picker, so the checks are not in them; they
//     include the in-process registry on memory and the extra server's
//     side of its connection.
func scalePicker(tb testing.TB, be *Backend, cfg Config) ([]Sample, error) {
	if be.sets != nil {
		return nil, nil // the scale scenario writes such a backend in sets, up to the resolver
	}
	n := cfg.ScaleInsts
	if n <= 0 {
		return nil, fmt.Errorf("scale instances %d: want > 0", n)
	}
	// Each instance holds a listener, a server conn and a client conn.
	if err := raiseNoFile(3*n + 1024); err != nil {
		return nil, err
	}
	h0, _ := heapAndGoroutines()
	t0 := time.Now()
	srv, err := startHelloMany(tb, "scale", n)
	if err != nil {
		return nil, err
	}
	listen := time.Since(t0)
	h1, _ := heapAndGoroutines()
	moving := startHello(tb, "moving")
	svc := uniqueService("picker")
	reg := be.Open(tb, nil)
	disc := be.Open(tb, nil)
	t0 = time.Now()
	if err := registerMany(tb, be, reg, n, func(i int) registry.Instance {
		return registry.Instance{ID: fmt.Sprintf("i%05d", i), Service: svc, Address: srv.addrs[i]}
	}); err != nil {
		return nil, err
	}
	registered := time.Since(t0)
	var out []Sample
	for _, pol := range scalePolicies {
		m, err := scalePickerOne(tb, be, cfg, disc, reg, srv, moving, svc, pol.name, pol.cycles)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pol.name, err)
		}
		m["listen_ms"] = ms(listen)
		m["listeners_heap_kib"] = float64(int64(h1)-int64(h0)) / 1024
		m["register_all_ms"] = ms(registered)
		out = append(out, Sample{Variant: pol.name, Metrics: m})
	}
	return out, nil
}

func scalePickerOne(tb testing.TB, be *Backend, cfg Config, disc registry.Discovery, reg registry.Registry, srv *manyServer, moving *helloServer,
	svc, policy string, cycles bool) (map[string]float64, error) {
	ctx := tb.Context()
	n := cfg.ScaleInsts
	p := newProbe(moving.addr, n)
	defer p.close()

	h0, g0 := heapAndGoroutines()
	cpu0 := cpuTime()
	t0 := time.Now()
	cc, client := dialConfig(nopCleanup{tb}, disc, newCache(tb), svc, p.config(policy), be.dialOpts...)
	defer func() {
		cc.Close()
		// The next policy's conns must not add to these: wait for the
		// servers' ends to close.
		srv.waitConns(ctx, 0, 30*time.Second)
	}()
	cc.Connect()
	if err := waitFullPicker(ctx, p, n); err != nil {
		return nil, err
	}
	connectCPU := cpuTime() - cpu0
	first, full, fullPicker, err := checkFullPicker(p, n, svc, cycles)
	if err != nil {
		return nil, err
	}
	h1, g1 := heapAndGoroutines()

	ch := &scaleChanges{ctx: ctx, p: p, n: n, svc: svc, cycles: cycles, reg: reg, client: client, moving: moving, in: moving.instance(svc)}
	for c := range max(1, cfg.ScaleChanges) {
		if err := ch.add(c); err != nil {
			return nil, err
		}
		if err := ch.remove(c); err != nil {
			return nil, err
		}
	}
	changes := float64(len(ch.addPick) + len(ch.delPick))
	m := map[string]float64{
		"instances":                 float64(n),
		"changes":                   changes,
		"first_resolver_ms":         ms(first.at.Sub(t0)),
		"first_ready_ms":            ms(full.at.Sub(t0)),
		"first_picker_ms":           ms(fullPicker.at.Sub(t0)),
		"connect_cpu_ms":            ms(connectCPU),
		"heap_mib":                  float64(int64(h1)-int64(h0)) / (1 << 20),
		"heap_kib_per_instance":     float64(int64(h1)-int64(h0)) / 1024 / float64(n),
		"goroutines_per_instance":   float64(g1-g0) / float64(n),
		"process_cpu_ms_per_change": ms(ch.cost.cpu) / changes,
		"allocs_per_change":         float64(ch.cost.mallocs) / changes,
		"alloc_kib_per_change":      float64(ch.cost.bytes) / 1024 / changes,
	}
	putPercentiles(m, "register_resolver", ch.addRes)
	putPercentiles(m, "register_picker", ch.addPick)
	putPercentiles(m, "deregister_resolver", ch.delRes)
	putPercentiles(m, "deregister_picker", ch.delPick)
	return m, nil
}

// waitFullPicker waits until the policy has published a picker with all
// n endpoints READY.
func waitFullPicker(ctx context.Context, p *probe, n int) error {
	// Connecting n SubConns rebuilds the picker at every one: O(n²).
	connectFor := 60*time.Second + time.Duration(n)*20*time.Millisecond
	if err := p.wait(ctx, connectFor, fmt.Sprintf("a picker with all %d endpoints", n), func() bool { return !p.fullPicker.at.IsZero() }); err != nil {
		p.mu.Lock()
		err = fmt.Errorf("%w (%d healthy)", err, p.healthy)
		p.mu.Unlock()
		return err
	}
	return nil
}

// checkFullPicker returns the resolver's first state with n endpoints,
// the moment all n were READY and the first picker after that, which it
// checks as scalePolicies says.
func checkFullPicker(p *probe, n int, svc string, cycles bool) (first resolvedStamp, full, fullPicker stamp, err error) {
	p.mu.Lock()
	first, _ = p.resolvedAfterLocked(0, n)
	full, fullPicker = p.full, p.fullPicker
	p.mu.Unlock()
	if first.at.IsZero() {
		return first, full, fullPicker, fmt.Errorf("no resolver state with %d endpoints before the full picker", n)
	}
	if cycles {
		if _, distinct, err := pickCheck(fullPicker.picker, n, "", false); err != nil || distinct != n {
			return first, full, fullPicker, fmt.Errorf("the first picker after all %d were ready picks %d distinct SubConns in %d picks (%v)", n, distinct, n, err)
		}
	} else if v, err := inspected(svc); err != nil || v.ready != n {
		return first, full, fullPicker, fmt.Errorf("the policy's view after all %d were ready: %d READY (%v)", n, v.ready, err)
	}
	return first, full, fullPicker, nil
}

// scaleChanges registers and deregisters the moving instance of one
// policy's run, and keeps what each change took.
type scaleChanges struct {
	ctx    context.Context
	p      *probe
	n      int // instances besides the moving one
	svc    string
	cycles bool // the policy's picker cycles through its SubConns (scalePolicies)
	reg    registry.Registry
	client hellopb.HelloServiceClient
	moving *helloServer
	in     registry.Instance // the moving instance

	sc                               *probeSC // the moving instance's SubConn of the last add
	addRes, addPick, delRes, delPick []time.Duration
	cost                             changeCost
}

// add registers the moving instance, measures until the resolver's
// state with it and until the first picker after its SubConn was READY,
// and checks that picker; the first time, real calls must reach it.
func (s *scaleChanges) add(c int) error {
	// Let what the last change left (a conn closing) finish outside
	// the counted windows, and keep below the rate at which a watch
	// may query Consul (consul.DefaultRate).
	sleep(s.ctx, changePause())
	mark := s.p.mark()
	var t0 time.Time
	var res resolvedStamp
	if err := s.cost.add(func() error {
		t0 = time.Now()
		if err := s.reg.Register(s.ctx, s.in); err != nil {
			return err
		}
		if err := s.p.wait(s.ctx, 30*time.Second, "the new instance in a picker", func() bool {
			res, _ = s.p.resolvedAfterLocked(mark, s.n+1)
			s.sc = s.p.subConnAfterLocked(mark)
			return !res.at.IsZero() && s.sc != nil && !s.sc.in.at.IsZero()
		}); err != nil {
			return fmt.Errorf("change %d: register: %w", c, err)
		}
		return nil
	}); err != nil {
		return err
	}
	s.p.mu.Lock()
	inAt, inPicker := s.sc.in.at, s.sc.in.picker
	s.p.mu.Unlock()
	s.addRes, s.addPick = append(s.addRes, res.at.Sub(t0)), append(s.addPick, inAt.Sub(t0))
	n, moving := s.n, s.moving
	if s.cycles {
		if found, _, err := pickCheck(inPicker, n+1, moving.addr, true); err != nil || !found {
			return fmt.Errorf("change %d: the picker published after the new instance was ready does not pick it in %d picks (%v)", c, n+1, err)
		}
	} else if v, err := inspected(s.svc); err != nil || v.state[moving.addr] != "READY" || v.ready != n+1 {
		return fmt.Errorf("change %d: after the picker published after the new instance was ready, the policy's view has it %q and %d READY of %d, want READY and %d (%v)",
			c, v.state[moving.addr], v.ready, len(v.state), n+1, err)
	}
	if c == 0 {
		if err := reaches(s.ctx, s.client, moving, 20*time.Second, 50*(n+1)); err != nil {
			return fmt.Errorf("change %d: %w", c, err)
		}
	}
	return nil
}

// remove deregisters the moving instance, measures until the resolver's
// state without it and until the first picker after its SubConn was
// shut down, and checks that picker; the first time, a streak of real
// calls must avoid it.
func (s *scaleChanges) remove(c int) error {
	sleep(s.ctx, changePause())
	mark := s.p.mark()
	var t0 time.Time
	var res resolvedStamp
	if err := s.cost.add(func() error {
		t0 = time.Now()
		if err := s.reg.Deregister(s.ctx, s.in); err != nil {
			return err
		}
		if err := s.p.wait(s.ctx, 30*time.Second, "a picker without the removed instance", func() bool {
			res, _ = s.p.resolvedAfterLocked(mark, s.n)
			return !res.at.IsZero() && !s.sc.out.at.IsZero()
		}); err != nil {
			return fmt.Errorf("change %d: deregister: %w", c, err)
		}
		return nil
	}); err != nil {
		return err
	}
	s.p.mu.Lock()
	outAt, outPicker := s.sc.out.at, s.sc.out.picker
	s.p.mu.Unlock()
	s.delRes, s.delPick = append(s.delRes, res.at.Sub(t0)), append(s.delPick, outAt.Sub(t0))
	n, moving := s.n, s.moving
	picks := n + 1
	if !s.cycles {
		picks = 16 * (n + 1)
		if v, err := inspected(s.svc); err != nil || v.state[moving.addr] != "" || v.ready != n {
			return fmt.Errorf("change %d: after the picker published after the removed instance's SubConn was shut down, the policy's view has it %q and %d READY, want it gone and %d (%v)",
				c, v.state[moving.addr], v.ready, n, err)
		}
	}
	if found, _, err := pickCheck(outPicker, picks, moving.addr, true); err != nil || found {
		return fmt.Errorf("change %d: the picker published after the removed instance's SubConn was shut down still picks it (%v)", c, err)
	}
	if c == 0 {
		if err := avoids(s.ctx, s.client, moving, min(3*(n+1), 10000)); err != nil {
			return fmt.Errorf("change %d: %w", c, err)
		}
	}
	return nil
}

// changeCost adds up the process's CPU time and allocations over the
// changes of a run.
type changeCost struct {
	cpu            time.Duration
	mallocs, bytes uint64
}

// add runs f and, if it succeeds, adds the CPU time and allocations it
// took.
func (c *changeCost) add(f func() error) error {
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	c0 := cpuTime()
	if err := f(); err != nil {
		return err
	}
	c.cpu += cpuTime() - c0
	runtime.ReadMemStats(&ms1)
	c.mallocs, c.bytes = c.mallocs+ms1.Mallocs-ms0.Mallocs, c.bytes+ms1.TotalAlloc-ms0.TotalAlloc
	return nil
}

// policyView is a Wayfinder balancer's view in package inspect: the
// endpoints its last picker was built from, by address, with their
// connectivity states.
type policyView struct {
	state map[string]string
	ready int
}

// inspected returns the view of the one live Wayfinder balancer at the
// top of a ClientConn for svc.
func inspected(svc string) (policyView, error) {
	var found []inspect.Balancer
	for _, b := range inspect.Balancers() {
		if b.Parent == 0 && strings.HasSuffix(b.Target, "/"+svc) {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		return policyView{}, fmt.Errorf("%d live Wayfinder balancers for %s, want 1", len(found), svc)
	}
	v := policyView{state: map[string]string{}}
	for _, e := range found[0].Endpoints {
		v.state[e.Addr] = e.State
		if e.State == "READY" {
			v.ready++
		}
	}
	return v, nil
}

// changePause is the pause before each change: 100 ms on average.
func changePause() time.Duration { return 50*time.Millisecond + jitter(100*time.Millisecond) }

// reaches makes calls from 8 goroutines until one reaches h, for up to
// d or limit calls.
func reaches(ctx context.Context, c hellopb.HelloServiceClient, h *helloServer, d time.Duration, limit int) error {
	before := h.calls.Load()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var made atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for h.calls.Load() == before && made.Add(1) <= int64(limit) && ctx.Err() == nil {
				if _, err := call(ctx, c, 5*time.Second); err != nil && ctx.Err() == nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("calls to reach the new instance: %w", err)
	}
	if h.calls.Load() == before {
		return fmt.Errorf("no call reached the new instance in %d calls or %v after its picker", min(made.Load(), int64(limit)), d)
	}
	return nil
}

// avoids makes count calls from 8 goroutines and fails if one reaches h.
func avoids(ctx context.Context, c hellopb.HelloServiceClient, h *helloServer, count int) error {
	before := h.calls.Load()
	var made atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for made.Add(1) <= int64(count) {
				if _, err := call(ctx, c, 5*time.Second); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("calls after the removal: %w", err)
	}
	if got := h.calls.Load() - before; got != 0 {
		return fmt.Errorf("%d of %d calls reached the removed instance after the picker without it", got, count)
	}
	return nil
}

// registerMany registers inst(0) .. inst(n-1): writing them is not
// what is measured. On Consul they go straight into the catalog, on a
// node of their own with no checks (so passing), in transactions of 64,
// because n registrations through the agent would each be heartbeaten
// from this process (n/5 TTL updates a second, in the CPU measured) and
// one raft write each takes minutes at n = 5,000; the node is removed
// with tb. Elsewhere they go through reg, from 8 goroutines.
func registerMany(tb testing.TB, be *Backend, reg registry.Registrar, n int, inst func(int) registry.Instance) error {
	ctx := tb.Context()
	if be.consulAddr != nil {
		return consulCatalog(tb, be.consulAddr(tb, nil), n, inst)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if err := register(ctx, reg, inst(i), 10*time.Second); err != nil {
					errs <- fmt.Errorf("register %d of %d: %w", i, n, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func consulCatalog(tb testing.TB, addr string, n int, inst func(int) registry.Instance) error {
	ctx := tb.Context()
	cfg := api.DefaultConfig()
	cfg.Address = addr
	c, err := api.NewClient(cfg)
	if err != nil {
		return err
	}
	node := uniqueService("wfbench-node")
	if _, err := c.Catalog().Register(&api.CatalogRegistration{Node: node, Address: "127.0.0.1"}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("register node: %w", err)
	}
	tb.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c.Catalog().Deregister(&api.CatalogDeregistration{Node: node}, (&api.WriteOptions{}).WithContext(cctx))
	})
	var ops api.TxnOps
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		ok, resp, _, err := c.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
		if err == nil && !ok {
			err = fmt.Errorf("rolled back: %v", resp.Errors)
		}
		ops = ops[:0]
		return err
	}
	for i := range n {
		in := inst(i)
		host, port, err := net.SplitHostPort(in.Address)
		if err != nil {
			return err
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return err
		}
		ops = append(ops, &api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: node,
			Service: api.AgentService{ID: in.Service + ":" + in.ID, Service: in.Service, Address: host, Port: p, Meta: map[string]string{"wayfinder_id": in.ID}}}})
		if len(ops) == 64 {
			if err := flush(); err != nil {
				return fmt.Errorf("catalog transaction: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("catalog transaction: %w", err)
	}
	return nil
}

// manyServer is one gRPC server (HelloService and health) serving on
// many listeners on 127.0.0.1:0, stopped with the TB.
type manyServer struct {
	*helloServer
	addrs []string
	open  atomic.Int64 // accepted conns not yet closed
}

func startHelloMany(tb testing.TB, name string, n int) (*manyServer, error) {
	s := &manyServer{helloServer: &helloServer{name: name, srv: grpc.NewServer()}}
	hellopb.RegisterHelloServiceServer(s.srv, s.helloServer)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s.srv, hs)
	var wg sync.WaitGroup
	tb.Cleanup(func() {
		hs.Shutdown()
		s.srv.Stop() // closes every listener and conn
		wg.Wait()
	})
	for range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		s.addrs = append(s.addrs, lis.Addr().String())
		cl := &countingListener{Listener: lis, open: &s.open}
		wg.Go(func() { s.srv.Serve(cl) }) // owned: returns at Stop above
	}
	s.addr = s.addrs[0]
	return s, nil
}

// waitConns waits until at most k accepted conns are open, for up to d.
func (s *manyServer) waitConns(ctx context.Context, k int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for s.open.Load() > k {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		sleep(ctx, 10*time.Millisecond)
	}
	return true
}

type countingListener struct {
	net.Listener
	open *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, open: l.open}, nil
}

type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// raiseNoFile raises the soft limit on open files to at least need, up
// to the hard limit, or fails if the hard limit is lower.
func raiseNoFile(need int) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	if rl.Cur >= uint64(need) {
		return nil
	}
	if rl.Max < uint64(need) {
		return fmt.Errorf("open files: need %d, the hard limit is %d", need, rl.Max)
	}
	rl.Cur = uint64(need)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("setrlimit: %w", err)
	}
	return nil
}
