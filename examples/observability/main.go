// Command observability runs HelloService servers and a client on the
// embedded registry (or any -registry URL), exports Wayfinder's metrics
// for Prometheus at /metrics, and serves the debug page at
// /debug/wayfinder, while a fault simulator keeps restarting servers. A
// second client calls through outlier ejection over weighted round robin,
// with pick counting on, so that the load-balancer metrics and the
// debug page's balancer section have something to show.
//
//	go run ./examples/observability -http 127.0.0.1:9464
//	curl -s 127.0.0.1:9464/metrics | grep wayfinder_
//	open http://127.0.0.1:9464/debug/wayfinder
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/balancer/lbmetrics"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/outlier"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	"github.com/wayfinder-rpc/wayfinder/debug"
	"github.com/wayfinder-rpc/wayfinder/hello/faultdemo"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// lbConfig is the policy of the second client: outlier ejection over
// weighted round robin.
const lbConfig = `{"loadBalancingConfig":[{"wayfinder_outlier_ejection":{"child":[{"wayfinder_weighted_round_robin":{}}]}}]}`

func main() {
	addr := flag.String("http", "127.0.0.1:9464", "address for /metrics and /debug/wayfinder")
	c := faultdemo.DefaultConfig()
	c.Duration = time.Hour
	faultdemo.RegisterFlags(flag.CommandLine, &c)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := run(ctx, lis, c, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run serves metrics and the debug page on lis while the demo runs.
func run(ctx context.Context, lis net.Listener, c faultdemo.Config, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer mp.Shutdown(context.Background())

	// Load-balancer metrics, pick counts included (one atomic add per
	// pick; per target and policy, not per endpoint).
	stopLB, err := lbmetrics.Register(mp, lbmetrics.WithPickCounts())
	if err != nil {
		return err
	}
	defer stopLB()

	// The demo dials through resolver.NewClient, which uses the default
	// cache; give it this program's meter provider.
	cache := resolver.NewCache(resolver.WithMeterProvider(mp), resolver.WithLogger(log))
	defer cache.Close()
	c.Cache = cache

	// ValidateURL first: url.Parse's error quotes the whole URL, which
	// may carry a password; ValidateURL's never does.
	if err := registry.ValidateURL(c.Registry); err != nil {
		return fmt.Errorf("-registry: %w", err)
	}
	u, _ := url.Parse(c.Registry) // ValidateURL parsed it
	cc, err := cache.NewClient(registry.Target{Registry: u, Service: "hello"}.String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(lbConfig))
	if err != nil {
		return err
	}
	defer cc.Close()
	callCtx, stopCalls := context.WithCancel(ctx)
	var calls sync.WaitGroup
	defer calls.Wait()
	defer stopCalls()
	calls.Go(func() { callLoop(callCtx, hellopb.NewHelloServiceClient(cc)) })

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	h := debug.NewHandler(debug.WithCache(cache))
	h.AddClientConn("hello (outlier over wrr)", cc)
	mux.Handle("/debug/wayfinder", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	log.Info("serving", "metrics", "http://"+lis.Addr().String()+"/metrics", "debug", "http://"+lis.Addr().String()+"/debug/wayfinder")

	_, demoErr := faultdemo.Run(ctx, c, os.Stdout)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return demoErr
}

// callLoop calls every 20 ms until ctx is done; failures are the fault
// simulator's doing and feed outlier ejection.
func callLoop(ctx context.Context, client hellopb.HelloServiceClient) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, _ = client.SayHello(cctx, &hellopb.HelloRequest{Name: "observability"})
		cancel()
	}
}
