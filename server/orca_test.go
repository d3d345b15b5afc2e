package server_test

import (
	"context"
	"sync"
	"testing"
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/orca"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// orcaProbePolicy is a tiny LB policy, as in grpc-go's ORCA example: one
// SubConn to the resolver's addresses, handed to the test once READY
// (for orca.RegisterOOBListener), and a picker whose Done passes each
// call's trailer report (balancer.DoneInfo.ServerLoad) to the test. The
// resolver state carries the test's probe, so that the policy is
// registered once and tests share nothing.
const orcaProbePolicy = "wayfinder_test_orca_probe"

type probeKey struct{}

type loadProbe struct {
	ready    chan balancer.SubConn         // the SubConn, once READY
	trailers chan *v3orcapb.OrcaLoadReport // each call's report; nil: none
}

func newLoadProbe() *loadProbe {
	return &loadProbe{ready: make(chan balancer.SubConn, 1), trailers: make(chan *v3orcapb.OrcaLoadReport, 16)}
}

func init() { balancer.Register(probeBuilder{}) }

type probeBuilder struct{}

func (probeBuilder) Name() string { return orcaProbePolicy }
func (probeBuilder) Build(cc balancer.ClientConn, _ balancer.BuildOptions) balancer.Balancer {
	return &probeBalancer{cc: cc}
}

type probeBalancer struct {
	cc    balancer.ClientConn
	sc    balancer.SubConn
	probe *loadProbe
}

func (b *probeBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	if b.sc != nil {
		return nil
	}
	b.probe = s.ResolverState.Attributes.Value(probeKey{}).(*loadProbe)
	//lint:ignore SA1019 NewSubConn is the only way for a policy to make a SubConn (grpc's ORCA example does the same); it gets the one address the test resolves.
	sc, err := b.cc.NewSubConn(s.ResolverState.Addresses[:1], balancer.NewSubConnOptions{StateListener: b.subConnState})
	if err != nil {
		return err
	}
	b.sc = sc
	sc.Connect()
	b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.Connecting, Picker: base.NewErrPicker(balancer.ErrNoSubConnAvailable)})
	return nil
}

func (b *probeBalancer) subConnState(st balancer.SubConnState) {
	switch st.ConnectivityState {
	case connectivity.Ready:
		b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.Ready, Picker: &probePicker{sc: b.sc, probe: b.probe}})
		select {
		case b.probe.ready <- b.sc:
		default:
		}
	case connectivity.TransientFailure:
		b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.TransientFailure, Picker: base.NewErrPicker(st.ConnectionError)})
	case connectivity.Idle:
		b.sc.Connect()
	}
}

func (b *probeBalancer) ResolverError(error)                                        {}
func (b *probeBalancer) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {}
func (b *probeBalancer) ExitIdle()                                                  {}
func (b *probeBalancer) Close() {
	if b.sc != nil {
		b.sc.Shutdown()
	}
}

type probePicker struct {
	sc    balancer.SubConn
	probe *loadProbe
}

func (p *probePicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{SubConn: p.sc, Done: func(di balancer.DoneInfo) {
		r, _ := di.ServerLoad.(*v3orcapb.OrcaLoadReport)
		p.probe.trailers <- r
	}}, nil
}

// oobListener passes each out-of-band report to the test.
type oobListener chan *v3orcapb.OrcaLoadReport

func (l oobListener) OnLoadReport(r *v3orcapb.OrcaLoadReport) {
	select {
	case l <- r:
	default: // the test reads the first reports only
	}
}

// loadServer is a hello service whose calls named "block" wait in the
// handler until release is closed (entered says one arrived), and whose
// calls named "record" record per-call metrics, and calls named "fail"
// fail with UNAVAILABLE.
type loadServer struct {
	hellopb.UnimplementedHelloServiceServer
	entered chan struct{}
	release chan struct{}
}

func (l *loadServer) SayHello(ctx context.Context, req *hellopb.HelloRequest) (*hellopb.HelloResponse, error) {
	switch req.GetName() {
	case "block":
		l.entered <- struct{}{}
		select {
		case <-l.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "fail":
		return nil, status.Error(codes.Unavailable, "failing on purpose")
	case "record":
		rec := orca.CallMetricsRecorderFromContext(ctx)
		rec.SetApplicationUtilization(0.9)
		rec.SetNamedMetric("cost", 3)
	}
	return &hellopb.HelloResponse{Message: "hi"}, nil
}

// startLoadServer starts a server on 127.0.0.1:0 with opts and a client
// through the probe policy; it returns the server, the client and the
// probe. Both stop at the end of the test.
func startLoadServer(t *testing.T, opts ...server.Option) (*server.Server, *loadServer, hellopb.HelloServiceClient, *loadProbe) {
	t.Helper()
	s, err := server.New(memory.New(), "load", opts...)
	if err != nil {
		t.Fatal(err)
	}
	ls := &loadServer{entered: make(chan struct{}, 1), release: make(chan struct{})}
	hellopb.RegisterHelloServiceServer(s.GRPC(), ls)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("Stop() = %v", err)
		}
	})
	p := newLoadProbe()
	r := manual.NewBuilderWithScheme("orcatest")
	r.InitialState(resolver.State{
		Addresses:  []resolver.Address{{Addr: s.Addr().String()}},
		Attributes: attributes.New(probeKey{}, p),
	})
	cc, err := grpc.NewClient(r.Scheme()+":///load", grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"`+orcaProbePolicy+`":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	cc.Connect()
	return s, ls, hellopb.NewHelloServiceClient(cc), p
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s after 10s", what)
		panic("unreachable")
	}
}

// blockCall starts a call that waits in the handler, and returns once
// the handler runs; the returned func releases it and waits for it.
func blockCall(t *testing.T, ls *loadServer, client hellopb.HelloServiceClient) (release func()) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := client.SayHello(t.Context(), &hellopb.HelloRequest{Name: "block"}, grpc.WaitForReady(true)); err != nil {
			t.Errorf("blocked call: %v", err)
		}
	}()
	recv(t, ls.entered, "blocked call in the handler")
	return sync.OnceFunc(func() { close(ls.release); wg.Wait() })
}

func TestLoadReportsOutOfBand(t *testing.T) {
	s, ls, client, p := startLoadServer(t, server.WithLoadReports())
	s.LoadReports().SetApplicationUtilization(0.5)
	s.LoadReports().SetNamedUtilization("queue", 0.25)
	sc := recv(t, p.ready, "READY SubConn")

	release := blockCall(t, ls, client)
	defer release()
	// A new OOB stream sends its first report at once; the next would
	// come after grpc's 30s minimum, so each check opens its own.
	oob := func() *v3orcapb.OrcaLoadReport {
		l := make(oobListener, 1)
		stop := orca.RegisterOOBListener(sc, l, orca.OOBListenerOptions{ReportInterval: time.Second})
		defer stop()
		return recv(t, (<-chan *v3orcapb.OrcaLoadReport)(l), "out-of-band report")
	}
	r := oob()
	if got := r.GetApplicationUtilization(); got != 0.5 {
		t.Errorf("application utilization = %v, want 0.5", got)
	}
	if got := r.GetUtilization()["queue"]; got != 0.25 {
		t.Errorf(`utilization["queue"] = %v, want 0.25`, got)
	}
	if got := r.GetNamedMetrics()[server.InFlightMetric]; got != 1 {
		t.Errorf("%s = %v with one call in the handler, want 1 (the ORCA stream is not counted)", server.InFlightMetric, got)
	}
	if got := r.GetCpuUtilization(); got <= 0 {
		t.Errorf("cpu utilization = %v, want > 0", got)
	}

	release()
	s.LoadReports().DeleteApplicationUtilization()
	r = oob()
	if got := r.GetNamedMetrics()[server.InFlightMetric]; got != 0 {
		t.Errorf("%s = %v after the call ended, want 0", server.InFlightMetric, got)
	}
	if got := r.GetApplicationUtilization(); got != 0 {
		t.Errorf("application utilization = %v after it was deleted, want 0 (unset)", got)
	}
}

func TestLoadReportsPerCall(t *testing.T) {
	s, ls, client, p := startLoadServer(t, server.WithLoadReports())
	s.LoadReports().SetApplicationUtilization(0.5)
	recv(t, p.ready, "READY SubConn")

	call := func(name string) *v3orcapb.OrcaLoadReport {
		t.Helper()
		if _, err := client.SayHello(t.Context(), &hellopb.HelloRequest{Name: name}); err != nil {
			t.Fatalf("SayHello(%q): %v", name, err)
		}
		r := recv(t, p.trailers, "Done of "+name)
		if r == nil {
			t.Fatalf("call %q: no load report in DoneInfo.ServerLoad", name)
		}
		return r
	}

	// A handler that records nothing still reports the server's metrics.
	r := call("plain")
	if got := r.GetApplicationUtilization(); got != 0.5 {
		t.Errorf("plain call: application utilization = %v, want the server's 0.5", got)
	}
	if got, ok := r.GetNamedMetrics()[server.InFlightMetric]; !ok || got != 0 {
		t.Errorf("plain call: %s = %v (present %v), want 0", server.InFlightMetric, got, ok)
	}
	if got := r.GetCpuUtilization(); got <= 0 {
		t.Errorf("plain call: cpu utilization = %v, want > 0", got)
	}

	// The handler's own values override the server's in its trailer.
	r = call("record")
	if got := r.GetApplicationUtilization(); got != 0.9 {
		t.Errorf("recording call: application utilization = %v, want the handler's 0.9", got)
	}
	if got := r.GetNamedMetrics()["cost"]; got != 3 {
		t.Errorf(`recording call: named_metrics["cost"] = %v, want 3`, got)
	}

	release := blockCall(t, ls, client)
	r = call("plain")
	if got := r.GetNamedMetrics()[server.InFlightMetric]; got != 1 {
		t.Errorf("call beside a blocked one: %s = %v, want 1", server.InFlightMetric, got)
	}
	release()
	if r := recv(t, p.trailers, "Done of the blocked call"); r.GetNamedMetrics()[server.InFlightMetric] != 0 {
		t.Errorf("blocked call's own trailer: %s = %v, want 0 (itself not counted)", server.InFlightMetric, r.GetNamedMetrics()[server.InFlightMetric])
	}
}

// TestLoadReportsRates checks that reports carry the rates of calls and
// failed calls (rps_fractional, eps) without the application setting
// them: grpc's weighted_round_robin (A58) ignores a report without a
// rate, so WithLoadReports alone must be enough for it.
func TestLoadReportsRates(t *testing.T) {
	s, _, client, p := startLoadServer(t, server.WithLoadReports())
	recv(t, p.ready, "READY SubConn")
	call := func(name string) *v3orcapb.OrcaLoadReport {
		t.Helper()
		client.SayHello(t.Context(), &hellopb.HelloRequest{Name: name}) // "fail" fails by design
		return recv(t, p.trailers, "Done of "+name)
	}
	// A rate is sampled at most once a second: call until one shows
	// both, bounded by a count generous enough for any machine.
	var r *v3orcapb.OrcaLoadReport
	for i := 0; ; i++ {
		call("plain")
		r = call("fail")
		if r.GetRpsFractional() > 0 && r.GetEps() > 0 {
			break
		}
		if i == 100_000 {
			t.Fatalf("after %d calls: rps_fractional = %v, eps = %v, want both > 0", 2*i, r.GetRpsFractional(), r.GetEps())
		}
	}
	if r.GetEps() > r.GetRpsFractional() {
		t.Errorf("eps %v > rps_fractional %v: failed calls are among the calls", r.GetEps(), r.GetRpsFractional())
	}

	// What the application sets wins.
	s.LoadReports().SetQPS(42)
	s.LoadReports().SetEPS(7)
	if r := call("plain"); r.GetRpsFractional() != 42 || r.GetEps() != 7 {
		t.Errorf("after SetQPS(42), SetEPS(7): rps_fractional = %v, eps = %v", r.GetRpsFractional(), r.GetEps())
	}
}

func TestLoadReportsOff(t *testing.T) {
	s, _, client, p := startLoadServer(t)
	recv(t, p.ready, "READY SubConn")
	if s.LoadReports() != nil {
		t.Errorf("LoadReports() = %v without WithLoadReports, want nil", s.LoadReports())
	}
	if _, ok := s.GRPC().GetServiceInfo()["xds.service.orca.v3.OpenRcaService"]; ok {
		t.Errorf("the ORCA service is registered without WithLoadReports")
	}
	if _, err := client.SayHello(t.Context(), &hellopb.HelloRequest{}); err != nil {
		t.Fatal(err)
	}
	if r := recv(t, p.trailers, "Done"); r != nil {
		t.Errorf("a call's trailer carries a load report without WithLoadReports: %v", r)
	}

	on, _, _, _ := startLoadServer(t, server.WithLoadReports())
	if _, ok := on.GRPC().GetServiceInfo()["xds.service.orca.v3.OpenRcaService"]; !ok {
		t.Errorf("the ORCA service is not registered WithLoadReports")
	}
}
