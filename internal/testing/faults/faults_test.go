package faults

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
	"github.com/wayfinder-rpc/wayfinder/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// soak returns how long each scenario repeats its faults: 0 (one pass)
// unless WAYFINDER_FAULTS_SOAK is set to a duration.
func soak(t *testing.T) time.Duration {
	v := os.Getenv("WAYFINDER_FAULTS_SOAK")
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("WAYFINDER_FAULTS_SOAK=%q: %v", v, err)
	}
	return d
}

// fault is one injected failure, complete: it returns once the registry
// should work again.
type fault struct {
	name string
	do   func(t *testing.T)
}

// scenario describes a registry and the faults to inject into it.
type scenario struct {
	// open returns a new client with its own connection, for a writer or
	// for one ClientConn's resolver.
	open   func(t *testing.T) registry.Registry
	faults []fault
	// serverChurn changes the set through the server lifecycle instead
	// of direct Register/Deregister calls.
	serverChurn bool
}

// writer changes the registry's set, one change at a time, and records
// the truth: instance k lives at the address of pool[k%len(pool)].
type writer struct {
	t     *testing.T
	reg   registry.Registry
	svc   string
	pool  []*testenv.HelloServer
	truth *Truth
	lo    int // the set is the IDs lo..hi-1
	hi    int
	srvs  map[int]*server.Server // with serverChurn
	churn bool
}

func (w *writer) id(k int) string { return fmt.Sprintf("i%04d", k) }

func (w *writer) set() []string {
	var s []string
	for k := w.lo; k < w.hi; k++ {
		s = append(s, w.id(k))
	}
	return s
}

// retry runs f until it succeeds, for up to 60 s: the registry may be
// coming back from a fault.
func (w *writer) retry(what string, f func(ctx context.Context) error) {
	w.t.Helper()
	var err error
	if !wait.Until(60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(w.t.Context(), 3*time.Second)
		defer cancel()
		err = f(ctx)
		return err == nil
	}) {
		w.t.Fatalf("%s = %v after 60s of retries", what, err)
	}
}

func (w *writer) add() {
	w.t.Helper()
	k := w.hi
	addr := w.pool[k%len(w.pool)].Addr
	if w.churn {
		s, err := server.New(w.reg, w.svc, server.WithID(w.id(k)), server.WithListenAddress("127.0.0.1:0"), server.WithDrainTimeout(3*time.Second))
		if err != nil {
			w.t.Fatal(err)
		}
		hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: w.id(k)})
		if err := s.Start(w.t.Context()); err != nil {
			w.t.Fatalf("Start(%s) = %v", w.id(k), err)
		}
		w.srvs[k] = s
		// Start returns after the first registration attempt; the set
		// changed once the registry has it.
		w.retry("Lookup", func(ctx context.Context) error {
			got, err := w.reg.Lookup(ctx, w.svc)
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(got, func(i registry.Instance) bool { return i.ID == w.id(k) }) {
				return fmt.Errorf("%s not registered yet", w.id(k))
			}
			return nil
		})
	} else {
		inst := registry.Instance{ID: w.id(k), Service: w.svc, Address: addr}
		w.retry("Register("+inst.ID+")", func(ctx context.Context) error { return w.reg.Register(ctx, inst) })
	}
	w.hi++
	w.truth.Append(w.set())
	w.settle()
}

// settle leaves the clients time to see most states, so that their
// histories are long enough to show an order; they may still skip some.
func (w *writer) settle() { time.Sleep(30 * time.Millisecond) }

func (w *writer) remove() {
	w.t.Helper()
	k := w.lo
	if w.churn {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := w.srvs[k].Stop(ctx)
		cancel()
		delete(w.srvs, k)
		if err != nil {
			// Stop does every step even when the registry fails; make
			// sure the instance is gone before recording the truth.
			inst := registry.Instance{ID: w.id(k), Service: w.svc, Address: "127.0.0.1:1"}
			w.retry("Deregister", func(ctx context.Context) error { return w.reg.Deregister(ctx, inst) })
		}
	} else {
		inst := registry.Instance{ID: w.id(k), Service: w.svc, Address: w.pool[k%len(w.pool)].Addr}
		w.retry("Deregister("+inst.ID+")", func(ctx context.Context) error { return w.reg.Deregister(ctx, inst) })
	}
	w.lo++
	w.truth.Append(w.set())
	w.settle()
}

// churn makes n changes keeping between 1 and 3 instances.
func (w *writer) churnN(n int) {
	for range n {
		if w.hi-w.lo < 3 {
			w.add()
		} else {
			w.remove()
		}
	}
}

// client is one ClientConn with its recorder.
type client struct {
	name string
	rec  *Recorder
}

func dial(t *testing.T, d registry.Discovery, cache *resolver.Cache, svc, name string) client {
	t.Helper()
	rec := NewRecorder()
	t.Cleanup(rec.Close)
	cc, err := grpc.NewClient("wayfinder:///"+svc,
		grpc.WithResolvers(resolver.NewBuilder(d, resolver.WithCache(cache))),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(rec.ServiceConfig()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	cc.Connect() // leave idle mode: the resolver starts at once
	return client{name: name, rec: rec}
}

// newCache is a cache with the resolver's defaults, the mass-removal
// guard included, as users get it; only the linger is 0, so that a
// test's watches stop with its ClientConns. The guard shows clients sets
// the registry never had (a shrunk set plus the instances clients still
// had) while it holds a removal, here the suite's drain to zero; such a
// state names what it keeps, and Check judges it by the guard's promise
// (see the package documentation), told the default hold.
func newCache(t *testing.T) *resolver.Cache {
	c := resolver.NewCache(resolver.WithLinger(0))
	t.Cleanup(func() { c.Close() })
	return c
}

// run churns the service, injects every fault of sc in turn (with
// changes right before, and right after each), then stops, and checks
// the history of five ClientConns: three with their own registry client
// and cache, two sharing one.
func run(t *testing.T, sc scenario) {
	pool := make([]*testenv.HelloServer, 4)
	for i := range pool {
		pool[i] = testenv.StartHello(t, fmt.Sprintf("pool-%d", i))
	}
	w := &writer{t: t, reg: sc.open(t), svc: fmt.Sprintf("faults-%d", time.Now().UnixNano()%1e9), pool: pool,
		truth: &Truth{}, srvs: map[int]*server.Server{}, churn: sc.serverChurn}
	t.Cleanup(func() {
		for _, s := range w.srvs {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			s.Stop(ctx)
			cancel()
		}
	})
	w.add()
	w.add()
	var clients []client
	for i := range 3 {
		clients = append(clients, dial(t, sc.open(t), newCache(t), w.svc, fmt.Sprintf("own-%d", i)))
	}
	shared, sharedReg := newCache(t), sc.open(t)
	for i := range 2 {
		clients = append(clients, dial(t, sharedReg, shared, w.svc, fmt.Sprintf("shared-%d", i)))
	}
	waitAll(t, clients, w.truth.Final())

	deadline := time.Now().Add(soak(t))
	for pass := 0; pass == 0 || time.Now().Before(deadline); pass++ {
		for _, f := range sc.faults {
			w.churnN(3)
			t.Logf("pass %d: %s", pass, f.name)
			f.do(t)
			w.churnN(2)
		}
		if pass == 0 {
			// Down to zero instances and back: an empty set is a state
			// too, distinct from an unreachable registry.
			for w.hi > w.lo {
				w.remove()
			}
			w.add()
		}
	}
	w.churnN(2)
	waitAll(t, clients, w.truth.Final())
	// Idle: nothing changes, so nothing may be emitted. Consul's
	// blocking queries return empty-handed every second here.
	time.Sleep(2 * time.Second)
	truth := w.truth.Sets()
	for _, c := range clients {
		ev := c.rec.Events()
		if err := Check(ev, truth, resolver.DefaultGuardHold); err != nil {
			t.Errorf("client %s: %v\nhistory: %v\ntruth: %v", c.name, err, ev, truth)
		}
	}
	ev := clients[0].rec.Events()
	t.Logf("first client's history: %v\n%d states written; client histories: %d events each (first client: %d updates, %d of them held, %d errors)",
		ev, len(truth), len(ev), count(ev, true), countHeld(ev), count(ev, false))
}

func countHeld(ev []Event) int {
	n := 0
	for _, e := range ev {
		if e.Kept != nil {
			n++
		}
	}
	return n
}

func count(ev []Event, update bool) int {
	n := 0
	for _, e := range ev {
		if e.Update == update {
			n++
		}
	}
	return n
}

func waitAll(t *testing.T, clients []client, want []string) {
	t.Helper()
	for _, c := range clients {
		if err := c.rec.WaitFor(want, 60*time.Second); err != nil {
			t.Fatalf("client %s: %v; history %v", c.name, err, c.rec.Events())
		}
	}
}

func TestMemory(t *testing.T) {
	store := memory.NewStore()
	run(t, scenario{
		open: func(t *testing.T) registry.Registry { return store.Open() },
		faults: []fault{{name: "outage 500ms", do: func(t *testing.T) {
			store.SetOutage(fmt.Errorf("%w: fault suite", registry.ErrUnavailable))
			time.Sleep(500 * time.Millisecond)
			store.SetOutage(nil)
		}}},
	})
}

// TestMemoryServerChurn changes the set through the server lifecycle:
// each instance is a server.Server started and drained.
func TestMemoryServerChurn(t *testing.T) {
	store := memory.NewStore()
	run(t, scenario{
		serverChurn: true,
		open:        func(t *testing.T) registry.Registry { return store.Open() },
		faults: []fault{{name: "outage 300ms", do: func(t *testing.T) {
			store.SetOutage(fmt.Errorf("%w: fault suite", registry.ErrUnavailable))
			time.Sleep(300 * time.Millisecond)
			store.SetOutage(nil)
		}}},
	})
}

func openEtcd(endpoints ...string) func(t *testing.T) registry.Registry {
	return func(t *testing.T) registry.Registry {
		r, err := etcd.New(endpoints)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
}

func TestEtcd(t *testing.T) {
	m := testenv.StartEtcd(t)
	run(t, scenario{
		open: openEtcd(m.ClientAddr),
		faults: []fault{
			{name: "restart", do: func(t *testing.T) { m.Stop(t); m.Restart(t) }},
			{name: "crash (SIGKILL) and restart", do: func(t *testing.T) { m.Kill(t); m.Restart(t) }},
			{name: "outage 1s", do: func(t *testing.T) { m.Stop(t); time.Sleep(time.Second); m.Restart(t) }},
			{name: "frozen 1s (SIGSTOP)", do: func(t *testing.T) { m.Pause(t); time.Sleep(time.Second); m.Resume(t) }},
		},
	})
}

func TestEtcdLeaderKill(t *testing.T) {
	c := testenv.StartEtcdCluster(t, 3)
	run(t, scenario{
		open: openEtcd(c.Endpoints()...),
		faults: []fault{{name: "leader kill", do: func(t *testing.T) {
			l := c.Leader(t)
			l.Kill(t)
			c.Leader(t) // a new one is elected among the two left
			time.Sleep(500 * time.Millisecond)
			l.Restart(t)
		}}},
	})
}

func openConsul(addr string) func(t *testing.T) registry.Registry {
	return func(t *testing.T) registry.Registry {
		// A 1 s wait makes idle blocking queries return often, so that
		// "no update when nothing changed" is exercised.
		r, err := consul.New(addr, consul.WithWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
}

// TestConsul cuts the network between the clients (and the writer) and
// the Consul agent: the registry is unreachable while it keeps its state.
func TestConsul(t *testing.T) {
	a := testenv.StartConsulWith(t, testenv.ConsulOptions{Server: true})
	p := newCutProxy(t, a.HTTPAddr())
	faults := []fault{
		{name: "unreachable 1s", do: func(t *testing.T) { p.setCut(true); time.Sleep(time.Second); p.setCut(false) }},
		{name: "unreachable 3s", do: func(t *testing.T) { p.setCut(true); time.Sleep(3 * time.Second); p.setCut(false) }},
	}
	if os.Getenv("WAYFINDER_FAULTS_LONG") != "" {
		// Agent restarts, in the long variant only (make faults), for
		// the time they take. Consul restores each TTL check as it was
		// last beaten, and every registration is beaten at once, so the
		// passing view keeps the instances (docs/consul.md). A partial
		// view that reached a client would fail the check, held or not:
		// it is a set the registry never held.
		faults = append(faults,
			fault{name: "agent restart", do: func(t *testing.T) { a.Restart(t) }},
			fault{name: "agent down 1s", do: func(t *testing.T) { a.Stop(); time.Sleep(time.Second); a.Start(t) }})
	}
	run(t, scenario{open: openConsul(p.Addr()), faults: faults})
}
