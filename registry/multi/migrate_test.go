package multi_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// load calls SayHello in a loop from a few workers, through the client
// generation in use, and counts calls, failures and the servers that
// answered. Swapping the client drains the old one before closing it,
// as a rolling restart of clients does.
type load struct {
	mu       sync.RWMutex // guards cur; held for reading while a call starts
	cur      *clientGen
	calls    atomic.Int64
	failures atomic.Int64

	smu     sync.Mutex // guards perSrv and lastErr
	perSrv  map[string]int64
	lastErr error
}

type clientGen struct {
	cc       *grpc.ClientConn
	client   hellopb.HelloServiceClient
	inflight sync.WaitGroup
}

func dialGen(t *testing.T, target string) *clientGen {
	t.Helper()
	cc, err := resolver.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatalf("resolver.NewClient(%q) = %v", target, err)
	}
	return &clientGen{cc: cc, client: hellopb.NewHelloServiceClient(cc)}
}

// swap makes g the client in use once a call through it succeeds (a
// new client process passes its readiness check), then drains and
// closes the previous one.
func (l *load) swap(t *testing.T, g *clientGen) {
	t.Helper()
	if !wait.Until(20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := g.client.SayHello(ctx, &hellopb.HelloRequest{Name: "ready", Num1: 1, Num2: 1})
		return err == nil
	}) {
		t.Fatalf("the new client never answered")
	}
	l.mu.Lock()
	old := l.cur
	l.cur = g
	l.mu.Unlock()
	if old != nil {
		old.inflight.Wait()
		old.cc.Close()
	}
}

func (l *load) worker(ctx context.Context, w int) {
	for n := 0; ctx.Err() == nil; n++ {
		l.mu.RLock()
		g := l.cur
		g.inflight.Add(1)
		l.mu.RUnlock()
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := g.client.SayHello(cctx, &hellopb.HelloRequest{Name: fmt.Sprintf("w%d", w), Num1: int32(n), Num2: 1})
		cancel()
		g.inflight.Done()
		l.calls.Add(1)
		if err == nil && resp.GetResult() != int32(n)+1 {
			err = fmt.Errorf("SayHello(%d, 1) = %d", n, resp.GetResult())
		}
		l.smu.Lock()
		if err != nil {
			l.failures.Add(1)
			l.lastErr = err
		} else {
			_, from, _ := strings.Cut(resp.GetMessage(), ", from ")
			l.perSrv[from]++
		}
		l.smu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Millisecond): // a steady load, not a spin
		}
	}
}

// served reports whether every server in ids answered a call since mark.
func (l *load) served(mark map[string]int64, ids ...string) bool {
	l.smu.Lock()
	defer l.smu.Unlock()
	for _, id := range ids {
		if l.perSrv[id] <= mark[id] {
			return false
		}
	}
	return true
}

func (l *load) mark() map[string]int64 {
	l.smu.Lock()
	defer l.smu.Unlock()
	m := map[string]int64{}
	for k, v := range l.perSrv {
		m[k] = v
	}
	return m
}

// onlyFrom reports whether, since mark, every call was answered by a
// server in ids.
func (l *load) onlyFrom(mark map[string]int64, ids ...string) (bool, map[string]int64) {
	l.smu.Lock()
	defer l.smu.Unlock()
	extra := map[string]int64{}
	for id, n := range l.perSrv {
		if n > mark[id] && !contains(ids, id) {
			extra[id] = n - mark[id]
		}
	}
	return len(extra) == 0, extra
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// startServers starts n HelloService servers on 127.0.0.1:0 registering
// through the registry named by rawURL, with IDs prefix-1..n.
func startServers(t *testing.T, rawURL, prefix string, n int) (registry.Registry, []*server.Server) {
	t.Helper()
	reg, err := registry.Open(t.Context(), rawURL)
	if err != nil {
		t.Fatalf("Open(%q) = %v", rawURL, err)
	}
	var out []*server.Server
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		s, err := server.New(reg, "hello", server.WithID(id), server.WithListenAddress("127.0.0.1:0"), server.WithDrainTimeout(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: id})
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		err = s.Start(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Start(%s) = %v", id, err)
		}
		select {
		case <-s.Registered():
		case <-time.After(20 * time.Second):
			t.Fatalf("%s never registered through %s", id, rawURL)
		}
		out = append(out, s)
	}
	return reg, out
}

// stopServers drains and stops servers one at a time (NOT_SERVING,
// deregister, wait, GracefulStop), then closes reg.
func stopServers(t *testing.T, reg registry.Registry, servers []*server.Server) {
	t.Helper()
	for _, s := range servers {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := s.Stop(ctx)
		cancel()
		if err != nil {
			t.Errorf("Stop(%s) = %v", s.Instance().ID, err)
		}
	}
	reg.Close()
}

func ids(servers []*server.Server) []string {
	var out []string
	for _, s := range servers {
		out = append(out, s.Instance().ID)
	}
	return out
}

// TestMigrateConsulToEtcd moves a live HelloService from Consul to etcd
// in the runbook's steps (docs/migration.md), under a steady load of
// calls through the Wayfinder resolver, and wants no failed call:
//
//  0. servers register in Consul; clients read Consul;
//  1. dual-write: new servers write both, the old ones stop;
//  2. read both: clients read multi:// over Consul and etcd;
//  3. read new: clients read etcd alone (through multi://);
//  4. stop writing old: new servers write etcd alone, the dual-writing
//     ones stop, and Consul is left with no instance.
func TestMigrateConsulToEtcd(t *testing.T) {
	c, e := testenv.StartConsul(t), testenv.StartEtcd(t)
	consulURL, etcdURL := "consul://"+c.HTTPAddr(), "etcd://"+e.Endpoint()

	regA, gA := startServers(t, consulURL, "a", 2)
	l := &load{perSrv: map[string]int64{}}
	l.swap(t, dialGen(t, "consul://"+c.HTTPAddr()+"/hello"))
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() { l.worker(ctx, w) })
	}
	defer func() {
		stop()
		wg.Wait()
		l.mu.Lock()
		if l.cur != nil {
			l.cur.cc.Close()
		}
		l.mu.Unlock()
	}()
	// Each step carries at least minCalls calls before the next.
	const minCalls = 200
	step := func(name string, cond func() bool) {
		t.Helper()
		start := l.calls.Load()
		if !wait.Until(30*time.Second, func() bool { return l.calls.Load() >= start+minCalls && cond() }) {
			t.Fatalf("step %q: never reached; calls %d, failures %d (last: %v), per server %v", name, l.calls.Load(), l.failures.Load(), l.lastErr, l.mark())
		}
		t.Logf("step %q done: %d calls, %d failed", name, l.calls.Load(), l.failures.Load())
	}
	m := l.mark()
	step("0: Consul only", func() bool { return l.served(m, ids(gA)...) })

	// 1. Dual-write: servers write both registries; the old ones stop.
	dual := "multi://?read=" + consulURL + "&write=" + consulURL + "," + etcdURL
	regB, gB := startServers(t, dual, "b", 2)
	m = l.mark()
	step("1: dual-write, new servers seen through Consul", func() bool { return l.served(m, ids(gB)...) })
	stopServers(t, regA, gA)
	m = l.mark()
	step("1: old servers gone", func() bool {
		ok, _ := l.onlyFrom(m, ids(gB)...)
		return ok && l.served(m, ids(gB)...)
	})

	// 2. Read both.
	l.swap(t, dialGen(t, "multi:///hello?read="+consulURL+","+etcdURL))
	m = l.mark()
	step("2: read both", func() bool { return l.served(m, ids(gB)...) })

	// 3. Read new.
	l.swap(t, dialGen(t, "multi:///hello?read="+etcdURL))
	m = l.mark()
	step("3: read etcd", func() bool { return l.served(m, ids(gB)...) })

	// 4. Stop writing old.
	single := "multi://?read=" + etcdURL + "&write=" + etcdURL
	regC, gC := startServers(t, single, "c", 2)
	m = l.mark()
	step("4: etcd-only servers seen", func() bool { return l.served(m, ids(gC)...) })
	stopServers(t, regB, gB)
	m = l.mark()
	step("4: dual-writing servers gone", func() bool {
		ok, _ := l.onlyFrom(m, ids(gC)...)
		return ok && l.served(m, ids(gC)...)
	})
	defer stopServers(t, regC, gC)

	cr, err := registry.Open(t.Context(), consulURL)
	if err != nil {
		t.Fatal(err)
	}
	defer cr.Close()
	if !wait.Until(20*time.Second, func() bool { got, err := cr.Lookup(t.Context(), "hello"); return err == nil && len(got) == 0 }) {
		got, err := cr.Lookup(t.Context(), "hello")
		t.Errorf("Consul after the migration holds %v, %v; want no instance of hello", got, err)
	}
	stop()
	wg.Wait()
	t.Logf("migration: %d calls, %d failed; per server %v", l.calls.Load(), l.failures.Load(), l.mark())
	if n := l.failures.Load(); n != 0 || l.calls.Load() == 0 {
		t.Fatalf("migration under load: %d of %d calls failed (last: %v); want 0", n, l.calls.Load(), l.lastErr)
	}
}
