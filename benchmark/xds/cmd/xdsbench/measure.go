package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/benchmark/internal/harness"
	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

// waitFor polls cond until it holds or limit passes.
func waitFor(limit time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(500 * time.Microsecond) // a poll; the figures come from timestamps, not from it
	}
	return nil
}

// helloServers serves the HelloService as each of names on a listener
// of its own on 127.0.0.1; stop stops them all.
func helloServers(names []string) (addrs map[string]string, stop func(), err error) {
	addrs = map[string]string{}
	var gs []*grpc.Server
	var done []chan struct{}
	stop = func() {
		for i, g := range gs {
			g.Stop()
			<-done[i]
		}
	}
	for _, n := range names {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stop()
			return nil, nil, err
		}
		g := grpc.NewServer()
		hellopb.RegisterHelloServiceServer(g, &hello.Server{Name: n})
		d := make(chan struct{})
		go func() {
			defer close(d)
			_ = g.Serve(lis)
		}()
		gs, done = append(gs, g), append(done, d)
		addrs[n] = lis.Addr().String()
	}
	return addrs, stop, nil
}

// inProcess calls through cc in a loop, as the goclient child does, and
// records the picks in a goClient without a process.
func inProcess(cc *grpc.ClientConn) (*goClient, func() error) {
	g := &goClient{read: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(g.read)
		hc := hellopb.NewHelloServiceClient(cc)
		first := true
		for ctx.Err() == nil {
			cctx, done := context.WithTimeout(ctx, 5*time.Second)
			reply, err := hc.SayHello(cctx, &hellopb.HelloRequest{Name: "xds"}, grpc.WaitForReady(first))
			done()
			if ctx.Err() != nil {
				return
			}
			now := time.Now()
			g.mu.Lock()
			if err != nil {
				g.fails = append(g.fails, err.Error())
			} else {
				first = false
				msg := reply.GetMessage()
				g.picks = append(g.picks, msg[len("Hello xds, from "):])
				g.at = append(g.at, now)
			}
			g.mu.Unlock()
		}
	}()
	return g, func() error {
		cancel()
		<-g.read
		if len(g.fails) > 0 {
			return fmt.Errorf("%d failed calls, the first: %s", len(g.fails), g.fails[0])
		}
		return nil
	}
}

// propagation measures Register → the first call that reaches the new
// instance, through Wayfinder's resolver in process (the baseline) and
// through the xDS server to grpc-go's xDS client, on one memory
// registry.
func propagation(sz sizes, _ io.Writer) (out []harness.Sample, err error) {
	addrs, stopHello, err := helloServers([]string{"a", "b", "d"})
	if err != nil {
		return nil, err
	}
	defer stopHello()
	store := memory.NewStore()
	reg := store.Open()
	defer reg.Close()
	ctx := context.Background()
	for _, n := range []string{"a", "b"} {
		if err := reg.Register(ctx, registry.Instance{Service: "hello", ID: n, Address: addrs[n]}); err != nil {
			return nil, err
		}
	}
	d := registry.Instance{Service: "hello", ID: "d", Address: addrs["d"]}
	for _, via := range []string{"resolver", "xds_go"} {
		var c *goClient
		var stop func() error
		switch via {
		case "resolver":
			cache := resolver.NewCache()
			defer cache.Close()
			cc, err := grpc.NewClient("wayfinder:///hello",
				grpc.WithResolvers(resolver.NewBuilder(reg, resolver.WithCache(cache))),
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
			if err != nil {
				return nil, err
			}
			defer cc.Close()
			c, stop = inProcess(cc)
		case "xds_go":
			xreg := store.Open()
			defer xreg.Close()
			srv, err := xds.New(xreg)
			if err != nil {
				return nil, err
			}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(lis) }()
			defer func() {
				_ = srv.Close()
				<-served
			}()
			if c, err = startGoClient("xdsbench-propagation", lis.Addr().String(), []string{"xds:///hello"}); err != nil {
				return nil, err
			}
			stop = c.stop
		}
		lat, err := changes(c, reg, d, sz.changes)
		if serr := stop(); err == nil {
			err = serr
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", via, err)
		}
		note := "Wayfinder's resolver in process (resolver.Cache, round_robin): the baseline"
		if via == "xds_go" {
			note = "grpc-go's xDS client (xds:///hello, grpc " + grpc.Version + ") in a child process, through Wayfinder's xDS server in this process; a pick is timed when its line is read"
		}
		out = append(out, harness.Sample{Variant: via, Notes: []string{note}, Metrics: map[string]float64{
			"changes": float64(len(lat)),
			"p50_ms":  ms(pct(lat, 0.5)),
			"p99_ms":  ms(pct(lat, 0.99)),
			"max_ms":  ms(pct(lat, 1)),
		}})
	}
	return out, nil
}

// changes registers d n times, each time timing until c's first call to
// it, then deregisters it and waits for c's calls to leave it.
func changes(c *goClient, reg registry.Registrar, d registry.Instance, n int) ([]time.Duration, error) {
	ctx := context.Background()
	if err := waitFor(time.Minute, "calls to a and b", func() bool { return c.only(20, "a", "b") }); err != nil {
		return nil, err
	}
	var lat []time.Duration
	for range n {
		mark := c.calls()
		start := time.Now()
		if err := reg.Register(ctx, d); err != nil {
			return nil, err
		}
		var at time.Time
		if err := waitFor(time.Minute, "a call to d", func() bool {
			var ok bool
			at, ok = c.firstPick(mark, "d")
			return ok
		}); err != nil {
			return nil, err
		}
		lat = append(lat, at.Sub(start))
		if err := reg.Deregister(ctx, d); err != nil {
			return nil, err
		}
		if err := waitFor(time.Minute, "calls to leave d", func() bool { return c.only(50, "a", "b") }); err != nil {
			return nil, err
		}
	}
	return lat, nil
}

func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func pctf(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// perChange is what one change cost the server child.
type perChange struct {
	bytes, cpuNs []float64
	push, first  []time.Duration // until every client saw it; until the median client did
	claBytes     []float64       // EDS response bytes the clients decoded (proto size), all of them
}

// toggle makes change k of a run over services: the extra instance of
// service k % len(services) is added on its odd visits and removed on
// its even ones, so that each service has base or base+1 instances.
func toggle(s *serverChild, services []string, k int, base int, addr func(string) string) (svc string, want int, err error) {
	svc = services[k%len(services)]
	id := svc + "-extra"
	if (k/len(services))%2 == 0 {
		_, err = s.do(command{Op: "add", Service: svc, ID: id, Addr: addr(svc)})
		return svc, base + 1, err
	}
	_, err = s.do(command{Op: "del", Service: svc, ID: id})
	return svc, base, err
}

// rawRun opens n raw clients on s asking for services, waits until each
// sees base endpoints in each, and returns them with a function that
// stops them all.
func rawRun(s *serverChild, prefix string, n int, services []string, base int, delta bool, t *tracker) ([]*rawClient, func(), error) {
	var clients []*rawClient
	stop := func() {
		for _, c := range clients {
			c.stop()
		}
	}
	for i := range n {
		c, err := startRaw(s.addr, fmt.Sprintf("%s-%d", prefix, i), services, delta, t)
		if err != nil {
			stop()
			return nil, nil, err
		}
		clients = append(clients, c)
	}
	err := waitFor(3*time.Minute, "every raw client to see every service", func() bool {
		return t.allSee(clients, services, base) || t.failed()
	})
	if err == nil && t.failed() {
		_, _, err = t.wait(0)
	}
	if err != nil {
		stop()
		return nil, nil, err
	}
	return clients, stop, nil
}

// rawChanges makes changes that the raw clients follow, measuring each.
func rawChanges(s *serverChild, clients []*rawClient, services []string, base, changes int, t *tracker, addr func(string) string) (perChange, error) {
	var pc perChange
	if _, err := s.do(command{Op: "stats", Synced: true}); err != nil {
		return pc, err
	}
	for k := range changes {
		before, err := s.do(command{Op: "stats"})
		if err != nil {
			return pc, err
		}
		svc := services[k%len(services)]
		want := base + 1
		if (k/len(services))%2 == 1 {
			want = base
		}
		t.expect(svc, want, len(clients))
		if _, _, err := toggle(s, services, k, base, addr); err != nil {
			return pc, err
		}
		lat, claBytes, err := t.wait(time.Minute)
		if err != nil {
			return pc, err
		}
		// Until every stream's ACK was handled: that is part of the cost.
		after, err := s.do(command{Op: "stats", Synced: true})
		if err != nil {
			return pc, err
		}
		if after.Synced != after.Streams {
			return pc, fmt.Errorf("change %d: %d of %d streams acknowledged within 10 s", k, after.Synced, after.Streams)
		}
		pc.bytes = append(pc.bytes, float64(after.BytesWritten-before.BytesWritten))
		pc.cpuNs = append(pc.cpuNs, float64(after.CPUNanos-before.CPUNanos))
		pc.push = append(pc.push, pct(lat, 1))
		pc.first = append(pc.first, pct(lat, 0.5))
		pc.claBytes = append(pc.claBytes, float64(claBytes))
	}
	return pc, nil
}

// failed reports whether a client failed.
func (t *tracker) failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err != nil
}

// fleet measures one xDS server with many clients of many services.
func fleet(sz sizes, log io.Writer) (out []harness.Sample, err error) {
	services := make([]string, sz.services)
	var names []string
	for i := range services {
		services[i] = fmt.Sprintf("svc-%02d", i)
		names = append(names, services[i]+"-0", services[i]+"-1", services[i]+"-extra")
	}
	addrs, stopHello, err := helloServers(names)
	if err != nil {
		return nil, err
	}
	defer stopHello()
	s, err := startServer()
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := s.stop(); err == nil {
			err = serr
		}
	}()
	for _, svc := range services {
		for _, id := range []string{svc + "-0", svc + "-1"} {
			if _, err := s.do(command{Op: "add", Service: svc, ID: id, Addr: addrs[id]}); err != nil {
				return nil, err
			}
		}
	}
	extra := func(svc string) string { return addrs[svc+"-extra"] }
	floor, err := s.do(command{Op: "heap"})
	if err != nil {
		return nil, err
	}

	// grpc-go's xDS clients first, each asking for every service.
	if sz.goClients > 0 {
		fmt.Fprintf(log, "xdsbench: fleet: %d grpc-go xDS clients\n", sz.goClients)
		var targets []string
		for _, svc := range services {
			targets = append(targets, "xds:///"+svc)
		}
		var gcs []*goClient
		stopAll := func() error {
			var errs []error
			for _, g := range gcs {
				errs = append(errs, g.stop())
			}
			gcs = nil
			return errors.Join(errs...)
		}
		defer stopAll()
		for i := range sz.goClients {
			g, err := startGoClient(fmt.Sprintf("xdsbench-go-%d", i), s.addr, targets)
			if err != nil {
				return nil, err
			}
			gcs = append(gcs, g)
		}
		if err := waitFor(2*time.Minute, "every grpc-go client to call every service", func() bool {
			for _, g := range gcs {
				if g.calls() < 2*len(services) {
					return false
				}
			}
			return true
		}); err != nil {
			return nil, err
		}
		var bytes, cpu []float64
		for k := range sz.fleetChg {
			st, err := s.do(command{Op: "stats", Synced: true})
			if err != nil {
				return nil, err
			}
			if _, _, err := toggle(s, services, k, 2, extra); err != nil {
				return nil, err
			}
			var after childStats
			if err := waitFor(time.Minute, "every grpc-go client to acknowledge the change", func() bool {
				after, err = s.do(command{Op: "stats", Synced: true})
				return err != nil || (after.Responses >= st.Responses+int64(len(gcs)) && after.Synced == after.Streams)
			}); err != nil {
				return nil, err
			}
			if err != nil {
				return nil, err
			}
			bytes = append(bytes, float64(after.BytesWritten-st.BytesWritten))
			cpu = append(cpu, float64(after.CPUNanos-st.CPUNanos))
		}
		if sz.fleetChg%(2*len(services)) != 0 {
			// Leave every service at its base for the raw clients.
			for k := sz.fleetChg; k%(2*len(services)) != 0; k++ {
				if k/len(services)%2 == 1 {
					if _, _, err := toggle(s, services, k, 2, extra); err != nil {
						return nil, err
					}
				}
			}
		}
		if err := stopAll(); err != nil {
			return nil, err
		}
		n := float64(sz.goClients)
		out = append(out, harness.Sample{Variant: "grpc_go_clients", Notes: []string{
			"real grpc-go xDS clients (grpc " + grpc.Version + "), each a child process with one ClientConn per service (one ADS stream), calling each service in turn; the server's bytes and CPU per change, divided by the clients: the check that the raw clients' figures are representative"},
			Metrics: map[string]float64{
				"clients":                      n,
				"services":                     float64(len(services)),
				"changes":                      float64(len(bytes)),
				"bytes_per_change_per_client":  pctf(bytes, 0.5) / n,
				"cpu_us_per_change_per_client": pctf(cpu, 0.5) / 1e3 / n,
			}})
	}
	if err := waitFor(time.Minute, "the grpc-go clients' streams to close", func() bool {
		st, err := s.do(command{Op: "stats"})
		return err != nil || st.Streams == 0
	}); err != nil {
		return nil, err
	}

	// The raw clients.
	fmt.Fprintf(log, "xdsbench: fleet: %d raw ADS clients × %d services\n", sz.clients, len(services))
	t := &tracker{}
	t0 := time.Now()
	clients, stop, err := rawRun(s, "raw", sz.clients, services, 2, false, t)
	if err != nil {
		return nil, err
	}
	defer stop()
	connect := time.Since(t0)
	full, err := s.do(command{Op: "heap", Synced: true})
	if err != nil {
		return nil, err
	}
	// With the server at rest: how many upstream watches, and their cost.
	pc, err := rawChanges(s, clients, services, 2, sz.fleetChg, t, extra)
	if err != nil {
		return nil, err
	}
	end, err := s.do(command{Op: "stats"})
	if err != nil {
		return nil, err
	}
	stop()
	if err := waitFor(time.Minute, "the raw clients' streams to close and the watches to stop", func() bool {
		st, err := s.do(command{Op: "stats"})
		return err != nil || (st.Streams == 0 && st.Watches == 0)
	}); err != nil {
		return nil, err
	}
	n := float64(sz.clients)
	out = append(out, harness.Sample{Variant: "raw_ads_clients", Notes: []string{
		"raw ADS streams (State of the World), each on a connection of its own, in one process: each asks for the listener, cluster and endpoints of every service, decodes every ClusterLoadAssignment and acknowledges every response, as a gRPC client's xDS client does on the wire; no channel, policy or connection to the endpoints"},
		Metrics: map[string]float64{
			"clients":                      n,
			"services":                     float64(len(services)),
			"changes":                      float64(len(pc.bytes)),
			"streams":                      float64(full.Streams),
			"upstream_watches":             float64(full.Watches),
			"upstream_watches_end":         float64(end.Watches),
			"watch_calls":                  float64(end.WatchCalls),
			"nacks":                        float64(end.NACKs),
			"connect_s":                    connect.Seconds(),
			"heap_per_client_kb":           (float64(full.HeapBytes) - float64(floor.HeapBytes)) / n / 1024,
			"goroutines_per_client":        float64(full.Goroutines-floor.Goroutines) / n,
			"server_heap_mb":               float64(full.HeapBytes) / (1 << 20),
			"bytes_per_change":             pctf(pc.bytes, 0.5),
			"bytes_per_change_per_client":  pctf(pc.bytes, 0.5) / n,
			"cpu_ms_per_change":            pctf(pc.cpuNs, 0.5) / 1e6,
			"cpu_ms_per_change_p99":        pctf(pc.cpuNs, 0.99) / 1e6,
			"cpu_us_per_change_per_client": pctf(pc.cpuNs, 0.5) / 1e3 / n,
			"push_all_p50_ms":              ms(pct(pc.push, 0.5)),
			"push_all_p99_ms":              ms(pct(pc.push, 0.99)),
			"push_median_client_p50_ms":    ms(pct(pc.first, 0.5)),
		}})
	return out, nil
}

// eds measures one service of many endpoints, State of the World and
// Delta, one after the other on one server child.
func eds(sz sizes, log io.Writer) (out []harness.Sample, err error) {
	s, err := startServer()
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := s.stop(); err == nil {
			err = serr
		}
	}()
	const svc = "big"
	if _, err := s.do(command{Op: "bulk", Service: svc, ID: svc, N: sz.endpoints}); err != nil {
		return nil, err
	}
	extra := func(string) string { return "127.0.0.1:9999" }
	for _, delta := range []bool{false, true} {
		variant := "eds_sotw"
		if delta {
			variant = "eds_delta"
		}
		fmt.Fprintf(log, "xdsbench: eds: %s, %d endpoints, %d clients\n", variant, sz.endpoints, sz.edsClients)
		t := &tracker{}
		clients, stop, err := rawRun(s, variant, sz.edsClients, []string{svc}, sz.endpoints, delta, t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", variant, err)
		}
		pc, err := rawChanges(s, clients, []string{svc}, sz.endpoints, sz.edsChg, t, extra)
		stop()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", variant, err)
		}
		if sz.edsChg%2 == 1 { // leave the service at its base for the next variant
			if _, err := s.do(command{Op: "del", Service: svc, ID: svc + "-extra"}); err != nil {
				return nil, err
			}
		}
		if err := waitFor(time.Minute, "the streams to close", func() bool {
			st, err := s.do(command{Op: "stats"})
			return err != nil || st.Streams == 0
		}); err != nil {
			return nil, err
		}
		n := float64(sz.edsClients)
		proto := "State of the World"
		if delta {
			proto = "Delta"
		}
		out = append(out, harness.Sample{Variant: variant, Notes: []string{
			"raw ADS streams (" + proto + "), each on a connection of its own, asking for the one service's listener, cluster and endpoints"},
			Metrics: map[string]float64{
				"endpoints":                   float64(sz.endpoints),
				"clients":                     n,
				"changes":                     float64(len(pc.bytes)),
				"push_p50_ms":                 ms(pct(pc.push, 0.5)),
				"push_p99_ms":                 ms(pct(pc.push, 0.99)),
				"bytes_per_change":            pctf(pc.bytes, 0.5),
				"bytes_per_change_per_client": pctf(pc.bytes, 0.5) / n,
				"eds_bytes_per_client":        pctf(pc.claBytes, 0.5) / n,
				"cpu_ms_per_change":           pctf(pc.cpuNs, 0.5) / 1e6,
				"cpu_ms_per_change_p99":       pctf(pc.cpuNs, 0.99) / 1e6,
			}})
	}
	return out, nil
}
