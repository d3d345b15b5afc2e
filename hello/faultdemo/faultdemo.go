// Package faultdemo is Wayfinder's HelloService demo: N servers register
// in a registry, a client calls SayHello continuously through the
// Wayfinder resolver with no retry policy, and a fault simulator keeps
// stopping servers — deregistering and draining them first, unlike the
// 2019 seed — and restarting them on new ports. It prints a live summary
// and a one-line result.
package faultdemo

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	_ "github.com/wayfinder-rpc/wayfinder/registry/consul" // consul:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/etcd"   // etcd:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/memory" // mem:// URLs
	"github.com/wayfinder-rpc/wayfinder/resolver"
	"github.com/wayfinder-rpc/wayfinder/server"
)

const service = "hello"

// Config is the demo's configuration.
type Config struct {
	Registry      string          // registry URL, such as "mem://"
	Duration      time.Duration   // how long to run
	Servers       int             // servers running at any time (≥ 2 with faults, ≥ 1 without)
	FaultInterval time.Duration   // time between fault rounds; 0 runs none, for faults made from outside (an agent restart)
	Rate          int             // client calls per second
	Workers       int             // concurrent callers
	Cache         *resolver.Cache // the client's watch cache; nil means resolver.DefaultCache
	// Listen is the servers' host:port. Port 0 (the default,
	// "127.0.0.1:0") gives every server a new random port, so restarts
	// re-register on new addresses; port P gives the servers P, P+1, ...,
	// P+Servers-1, and a restarted server takes the port of the one it
	// replaces. A wildcard host (0.0.0.0) advertises the host name.
	Listen string
}

// awaitRegistered polls the registry until it lists want instances of
// the service or d passes, and returns the last count and error.
func awaitRegistered(ctx context.Context, reg registry.Registry, want int, d time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
		insts, err := reg.Lookup(lctx, service)
		lcancel()
		if err == nil && len(insts) >= want {
			return len(insts), nil
		}
		select {
		case <-ctx.Done():
			return len(insts), err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// DefaultConfig returns the demo's defaults: 3 servers on mem://, a fault
// every 2 s for 12 s, 200 calls per second from 4 workers.
func DefaultConfig() Config {
	return Config{Registry: "mem://", Duration: 12 * time.Second, Servers: 3, FaultInterval: 2 * time.Second, Rate: 200, Workers: 4,
		Listen: "127.0.0.1:0"}
}

type stats struct {
	mu       sync.Mutex
	perSrv   map[string]int
	lastErr  error
	calls    atomic.Int64
	failures atomic.Int64
}

// Run runs the demo, printing to out, and reports whether it passed: no
// failed call and at least two fault rounds (when FaultInterval is not
// 0). A bad configuration or an unusable registry is an error.
func Run(ctx context.Context, c Config, out io.Writer) (bool, error) {
	if err := c.check(); err != nil {
		return false, err
	}
	reg, u, err := openRegistry(ctx, c.Registry)
	if err != nil {
		return false, err
	}
	defer reg.Close()
	target := registry.Target{Registry: u, Service: service}.String()

	f, err := newFleet(ctx, reg, c.Listen, c.Servers)
	if err != nil {
		return false, err
	}
	defer f.stopAll()
	if err := f.startAll(c.Servers); err != nil {
		return false, err
	}
	// A server's Start returns after its first registration attempt,
	// failed or not (it keeps retrying): ask the registry before saying
	// the servers are registered.
	if n, err := awaitRegistered(ctx, reg, c.Servers, 10*time.Second); n < c.Servers {
		why := ""
		if err != nil {
			why = ": " + err.Error()
		}
		return false, fmt.Errorf("%d servers started, but the registry at %s registered %d of %d within 10s%s", c.Servers, c.Registry, n, c.Servers, why)
	}

	cc, err := dial(c.Cache, target)
	if err != nil {
		return false, err
	}
	defer cc.Close()
	client := hellopb.NewHelloServiceClient(cc)
	faultsDesc := fmt.Sprintf("a fault every %v", c.FaultInterval)
	if c.FaultInterval == 0 {
		faultsDesc = "no faults"
	}
	fmt.Fprintf(out, "demo: %d servers of %q registered in %s; client dials %s (no retry policy); %s for %v\n",
		c.Servers, service, c.Registry, target, faultsDesc, c.Duration)

	st := &stats{perSrv: map[string]int{}}
	runCtx, cancel := context.WithTimeout(ctx, c.Duration)
	defer cancel()
	// Wait until the client reaches a server before counting: the first
	// calls of a new ClientConn wait for the resolver, which is not a fault.
	wctx, wcancel := context.WithTimeout(runCtx, 10*time.Second)
	_, err = client.SayHello(wctx, &hellopb.HelloRequest{Name: "warm-up"}, grpc.WaitForReady(true))
	wcancel()
	if err != nil {
		return false, fmt.Errorf("client never reached a server: %w", err)
	}
	var wg sync.WaitGroup
	interval := time.Duration(c.Workers) * time.Second / time.Duration(c.Rate)
	for w := range c.Workers {
		wg.Go(func() { callLoop(runCtx, client, st, w, interval) })
	}
	rounds, err := runFaults(runCtx, c.FaultInterval, f, reg, st, out)
	if err != nil {
		return false, err
	}
	wg.Wait()
	return report(out, c, st, rounds), nil
}

// check rejects a configuration the demo cannot run.
func (c Config) check() error {
	noFaults := c.FaultInterval == 0
	if c.Servers < 2 && !(noFaults && c.Servers == 1) || c.Rate < 1 || c.Workers < 1 || c.Duration <= 0 || c.FaultInterval < 0 {
		return errors.New("need -servers ≥ 2 (≥ 1 with -fault-interval 0), -rate ≥ 1, -workers ≥ 1, a positive -duration and a -fault-interval ≥ 0")
	}
	return nil
}

// openRegistry opens the registry at rawURL and returns it with its
// parsed URL.
func openRegistry(ctx context.Context, rawURL string) (registry.Registry, *url.URL, error) {
	// ValidateURL first: url.Parse's error quotes the whole URL, which
	// may carry a password; ValidateURL's never does.
	if err := registry.ValidateURL(rawURL); err != nil {
		return nil, nil, fmt.Errorf("-registry: %w", err)
	}
	u, _ := url.Parse(rawURL) // ValidateURL parsed it
	reg, err := registry.OpenURL(ctx, u)
	if err != nil {
		return nil, nil, fmt.Errorf("-registry: %w", err)
	}
	return reg, u, nil
}

// fleet is the demo's servers: started, registered, and restarted one at
// a time by the fault rounds, oldest first.
type fleet struct {
	ctx     context.Context
	reg     registry.Registry
	host    string
	port    int   // the first fixed port; 0: random ports
	free    []int // fixed ports not in use, when port > 0
	gen     int   // servers started so far, for their IDs
	servers []*server.Server
}

func newFleet(ctx context.Context, reg registry.Registry, listen string, n int) (*fleet, error) {
	host, port, err := listenAddr(listen, n)
	if err != nil {
		return nil, err
	}
	f := &fleet{ctx: ctx, reg: reg, host: host, port: port}
	for i := range n {
		if port > 0 {
			f.free = append(f.free, port+i)
		}
	}
	return f, nil
}

// startAll starts n servers.
func (f *fleet) startAll(n int) error {
	for range n {
		s, err := f.start()
		if err != nil {
			return err
		}
		f.servers = append(f.servers, s)
	}
	return nil
}

// start starts a new server, on a free fixed port if there is one.
func (f *fleet) start() (*server.Server, error) {
	f.gen++
	id := fmt.Sprintf("hello-%d", f.gen)
	listen := net.JoinHostPort(f.host, "0")
	if len(f.free) > 0 {
		listen, f.free = net.JoinHostPort(f.host, strconv.Itoa(f.free[0])), f.free[1:]
	}
	s, err := server.New(f.reg, service, server.WithID(id), server.WithDrainTimeout(3*time.Second), server.WithReflection(),
		server.WithListenAddress(listen))
	if err != nil {
		return nil, err
	}
	hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: id})
	sctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	return s, s.Start(sctx)
}

// restartOldest is one fault round: it drains and stops the oldest
// server, and starts a new one (on the freed port, if ports are fixed).
// A failed stop is printed; a failed start is the error.
func (f *fleet) restartOldest(round int, out io.Writer) error {
	old := f.servers[0]
	oldDesc := old.Instance().ID + " at " + old.Instance().Address
	t0 := time.Now()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := old.Stop(sctx)
	scancel()
	stopTook := time.Since(t0)
	f.servers = f.servers[1:]
	if err != nil {
		fmt.Fprintf(out, "fault: stopping %s: %v\n", oldDesc, err)
	}
	if f.port > 0 {
		if a, ok := old.Addr().(*net.TCPAddr); ok {
			f.free = append(f.free, a.Port)
		}
	}
	s, err := f.start()
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	f.servers = append(f.servers, s)
	fmt.Fprintf(out, "fault %d: drained and stopped %s in %v; started %s at %s\n",
		round, oldDesc, stopTook.Round(time.Millisecond), s.Instance().ID, s.Instance().Address)
	return nil
}

// stopAll stops the servers still running.
func (f *fleet) stopAll() {
	for _, s := range f.servers {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = s.Stop(sctx)
		cancel()
	}
}

// dial returns a round_robin client of target from cache, or from
// resolver.DefaultCache if cache is nil.
func dial(cache *resolver.Cache, target string) (*grpc.ClientConn, error) {
	if cache == nil {
		cache = resolver.DefaultCache()
	}
	return cache.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
}

// runFaults prints a summary every second and, unless every is 0, runs
// a fault round every interval, until ctx is done; it returns the number
// of rounds.
func runFaults(ctx context.Context, every time.Duration, f *fleet, reg registry.Discovery, st *stats, out io.Writer) (int, error) {
	rounds := 0
	start := time.Now()
	var faults <-chan time.Time // nil: no fault rounds
	if every > 0 {
		fault := time.NewTicker(every)
		defer fault.Stop()
		faults = fault.C
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastCalls int64
	for {
		select {
		case <-ctx.Done():
			return rounds, nil
		case <-tick.C:
			calls := st.calls.Load()
			printSummary(out, ctx, reg, st, time.Since(start), calls-lastCalls)
			lastCalls = calls
		case <-faults:
			if err := f.restartOldest(rounds+1, out); err != nil {
				return rounds, err
			}
			rounds++
		}
	}
}

// report prints the result and returns whether the demo passed.
func report(out io.Writer, c Config, st *stats, rounds int) bool {
	noFaults := c.FaultInterval == 0
	calls, failures := st.calls.Load(), st.failures.Load()
	pass := failures == 0 && (rounds >= 2 || noFaults) && calls > 0
	verdict := "PASS"
	if !pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(out, "RESULT: %s: %d calls, %d failed, %d fault rounds, %d servers, %v on %s\n",
		verdict, calls, failures, rounds, c.Servers, c.Duration, c.Registry)
	if st.lastErr != nil {
		fmt.Fprintf(out, "last error: %v\n", st.lastErr)
	}
	if rounds < 2 && !noFaults {
		fmt.Fprintf(out, "fewer than 2 fault rounds: raise -duration or lower -fault-interval\n")
	}
	return pass
}

func callLoop(ctx context.Context, client hellopb.HelloServiceClient, st *stats, worker int, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := client.SayHello(cctx, &hellopb.HelloRequest{Name: fmt.Sprintf("w%d", worker), Num1: int32(n), Num2: 1})
		cancel()
		st.calls.Add(1)
		if err == nil && resp.GetResult() != int32(n)+1 {
			err = fmt.Errorf("SayHello(%d, 1) = %d", n, resp.GetResult())
		}
		st.mu.Lock()
		if err != nil {
			st.failures.Add(1)
			st.lastErr = err
		} else {
			_, from, _ := strings.Cut(resp.GetMessage(), ", from ")
			st.perSrv[from]++
		}
		st.mu.Unlock()
	}
}

func printSummary(out io.Writer, ctx context.Context, reg registry.Discovery, st *stats, elapsed time.Duration, recent int64) {
	st.mu.Lock()
	names := make([]string, 0, len(st.perSrv))
	for n := range st.perSrv {
		names = append(names, n)
	}
	// hello-10 after hello-9.
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b)) })
	var per []string
	for _, n := range names {
		per = append(per, fmt.Sprintf("%s:%d", n, st.perSrv[n]))
	}
	st.mu.Unlock()
	current := "?"
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if insts, err := reg.Lookup(lctx, service); err == nil {
		var addrs []string
		for _, i := range insts {
			addrs = append(addrs, i.ID+"@"+i.Address)
		}
		current = strings.Join(addrs, " ")
	} else {
		current = "registry error: " + err.Error()
	}
	fmt.Fprintf(out, "[%5.1fs] calls %d (+%d) failed %d | per server %s | registered %s\n",
		elapsed.Seconds(), st.calls.Load(), recent, st.failures.Load(), strings.Join(per, " "), current)
}

// listenAddr splits Listen ("" is 127.0.0.1:0) and checks that the
// servers' ports fit.
func listenAddr(listen string, servers int) (string, int, error) {
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("-listen %q: want host:port, such as 127.0.0.1:0 or 0.0.0.0:50051: %v", listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port+servers-1 > 65535 {
		return "", 0, fmt.Errorf("-listen %q: port must be 0 (random) or a first port with room for %d servers", listen, servers)
	}
	return host, port, nil
}

// RegisterFlags binds c to flags on fs, with c's values as defaults.
func RegisterFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Registry, "registry", c.Registry, "registry URL: mem://, consul://127.0.0.1:8500, etcd://127.0.0.1:2379")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "how long to run")
	fs.IntVar(&c.Servers, "servers", c.Servers, "number of servers")
	fs.DurationVar(&c.FaultInterval, "fault-interval", c.FaultInterval, "time between fault rounds (stop one server, start a new one on a new port); 0 runs none")
	fs.IntVar(&c.Rate, "rate", c.Rate, "client calls per second")
	fs.IntVar(&c.Workers, "workers", c.Workers, "concurrent client callers")
	fs.StringVar(&c.Listen, "listen", c.Listen, "servers' host:port; port 0 picks a new random port per server, port P uses P..P+servers-1")
}
