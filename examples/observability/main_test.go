package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wayfinder-rpc/wayfinder/hello/faultdemo"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMetricsAndDebugPage(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := faultdemo.Config{Registry: "mem://observability-test", Duration: 3 * time.Second, Servers: 3, FaultInterval: time.Second, Rate: 100, Workers: 2}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, lis, c, slog.New(slog.DiscardHandler)) }()
	base := "http://" + lis.Addr().String()
	get := func(path string) string {
		resp, err := http.Get(base + path)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	want := []string{`wayfinder_service="hello"`, `wayfinder_backend="mem"`, "wayfinder_discovery_staleness_seconds", "wayfinder_discovery_watches",
		`wayfinder_lb_picks_total{`, `wayfinder_policy="outlier"`, `wayfinder_target="mem://observability-test/hello"`, "wayfinder_lb_ejections_total{", "wayfinder_lb_ejected{",
		`wayfinder_lb_endpoints{`, `wayfinder_state="READY"`, `wayfinder_policy="wrr"`, `wayfinder_discovery_instances{`, "wayfinder_discovery_updates_total"}
	// Wait for all of them: the endpoint-state gauge is read from the
	// balancers when scraped and may still say CONNECTING in a scrape
	// taken right after the first picks.
	var metrics string
	if !wait.Until(10*time.Second, func() bool {
		metrics = get("/metrics")
		for _, w := range want {
			if !strings.Contains(metrics, w) {
				return false
			}
		}
		return true
	}) {
		for _, w := range want {
			if !strings.Contains(metrics, w) {
				t.Errorf("/metrics lacks %s", w)
			}
		}
	}
	if page := get("/debug/wayfinder?format=json"); !strings.Contains(page, `"service": "hello"`) || !strings.Contains(page, `"policy": "outlier"`) {
		t.Errorf("/debug/wayfinder JSON = %s", page)
	}
	if err := <-done; err != nil {
		t.Fatalf("run() = %v", err)
	}
}
