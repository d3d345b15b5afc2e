package app_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"google.golang.org/grpc"

	"github.com/wayfinder-rpc/wayfinder/app"
	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	"github.com/wayfinder-rpc/wayfinder/balancer/lbmetrics"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/cctest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// TestMetricsModule: with a MeterProvider in the app, MetricsModule and
// Clients record load-balancer and discovery metrics through it, picks
// included when asked for, and the balancer metrics stop with the app.
func TestMetricsModule(t *testing.T) {
	const registryURL = "mem://fx-metrics"
	cfg := app.DefaultConfig()
	cfg.Registry, cfg.Service, cfg.ID = registryURL, "hello", "fx-metrics-1"
	srv := fxtest.New(t, fx.Supply(cfg), app.RegistryModule, app.ServerModule, fx.Provide(app.AsService(helloService)), fx.NopLogger)
	srv.RequireStart()
	defer srv.RequireStop()

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	var clients *app.Clients
	ccfg := app.DefaultConfig()
	ccfg.Registry, ccfg.Policy = registryURL, "wayfinder_weighted_round_robin"
	cli := fxtest.New(t, fx.Supply(ccfg), fx.Supply(fx.Annotate(mp, fx.As(new(metric.MeterProvider)))),
		fx.Supply(fx.Annotated{Group: "wayfinder.lbmetrics", Target: lbmetrics.WithPickCounts()}),
		app.RegistryModule, app.ClientModule, app.MetricsModule, fx.Populate(&clients), fx.NopLogger)
	cli.RequireStart()
	cc, err := clients.Conn("hello")
	if err != nil {
		t.Fatalf("Conn(hello) = %v", err)
	}
	const calls = 5
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for range calls {
		if _, err := hellopb.NewHelloServiceClient(cc).SayHello(ctx, &hellopb.HelloRequest{Name: "fx"}, grpc.WaitForReady(true)); err != nil {
			t.Fatalf("SayHello = %v", err)
		}
	}
	got := cctest.MetricSums(t, reader)
	if got[lbmetrics.MetricPicks] != calls || got[lbmetrics.MetricEndpoints] != 1 || got["wayfinder.discovery.instances"] != 1 {
		t.Fatalf("metrics = %v; want %d picks, 1 endpoint and 1 discovered instance", got, calls)
	}
	cli.RequireStop()
	if inspect.CountingPicks() {
		t.Error("pick counting still on after the app stopped")
	}
	if got := cctest.MetricSums(t, reader); got[lbmetrics.MetricPicks] != 0 || got[lbmetrics.MetricEndpoints] != 0 {
		t.Errorf("metrics after stop = %v; want no load-balancer metrics", got)
	}
}

// TestLoggerReachesClients: a *slog.Logger in the app logs the clients'
// registry outage, once when it starts and once when it ends.
func TestLoggerReachesClients(t *testing.T) {
	const registryURL = "mem://fx-logger"
	var buf cctest.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	logged := buf.String
	store := memory.Named("fx-logger")
	if err := store.Open().Register(t.Context(), registry.Instance{ID: "a", Service: "hello", Address: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	var clients *app.Clients
	cfg := app.DefaultConfig()
	cfg.Registry = registryURL
	cli := fxtest.New(t, fx.Supply(cfg), fx.Supply(logger), app.RegistryModule, app.ClientModule, fx.Populate(&clients), fx.NopLogger)
	cli.RequireStart()
	defer cli.RequireStop()
	cc, err := clients.Conn("hello")
	if err != nil {
		t.Fatalf("Conn(hello) = %v", err)
	}
	cc.Connect() // starts the resolver, and so the cache's watch
	store.SetOutage(errors.New("down"))
	wait.For(t, 10*time.Second, "the outage logged", func() bool { return strings.Contains(logged(), "watch failing") })
	store.SetOutage(nil)
	wait.For(t, 10*time.Second, "the recovery logged", func() bool { return strings.Contains(logged(), "watch recovered") })
}

// TestClientsSubset: Config.Subset and SubsetKey make the app's clients
// call exactly the instances resolver.ConnectionSubset names for that key.
func TestClientsSubset(t *testing.T) {
	reg := memory.Named("fx-subset").Open()
	defer reg.Close()
	var insts []registry.Instance
	names := map[string]string{}
	for i := range 4 {
		s := testenv.StartHello(t, fmt.Sprintf("s%d", i))
		in := registry.Instance{ID: fmt.Sprintf("id-%d", i), Service: "hello", Address: s.Addr}
		if err := reg.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
		insts = append(insts, in)
		names[s.Addr] = s.Name
	}
	want := map[string]bool{}
	for _, in := range resolver.ConnectionSubset(insts, 2, "pod-7") {
		want[names[in.Address]] = true
	}
	cfg := app.DefaultConfig()
	cfg.Registry, cfg.Subset, cfg.SubsetKey = "mem://fx-subset", 2, "pod-7"
	var clients *app.Clients
	cli := fxtest.New(t, fx.Supply(cfg), app.RegistryModule, app.ClientModule, fx.Populate(&clients), fx.NopLogger)
	cli.RequireStart()
	defer cli.RequireStop()
	cc, err := clients.Conn("hello")
	if err != nil {
		t.Fatal(err)
	}
	// Call until both servers of the subset answered: round_robin picks
	// only READY endpoints, so a run of calls made while the second one
	// still connects all reach the first (it failed 2 of 5 runs with a
	// fixed 40 calls: a test bug). No server outside the subset may ever
	// answer.
	got := map[string]bool{}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	wait.For(t, 20*time.Second, "calls reaching both servers of the subset", func() bool {
		resp, err := hellopb.NewHelloServiceClient(cc).SayHello(ctx, &hellopb.HelloRequest{Name: "fx"}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatal(err)
		}
		_, from, _ := strings.Cut(resp.GetMessage(), ", from ")
		got[from] = true
		if !want[from] {
			t.Fatalf("server %s called, want only the subset %v", from, want)
		}
		return len(got) == len(want)
	})
	if !maps.Equal(got, want) {
		t.Errorf("servers called = %v, want exactly the subset %v", got, want)
	}
}
