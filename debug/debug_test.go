package debug_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/outlier"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	"github.com/wayfinder-rpc/wayfinder/debug"
	"github.com/wayfinder-rpc/wayfinder/examples/helloworld/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setup runs two real servers registered in a memory registry, a client
// through the resolver, and the debug page on a loopback HTTP server.
func setup(t *testing.T) (*httptest.Server, *memory.Store) {
	store := memory.NewStore()
	reg := store.Open()
	for _, name := range []string{"alpha", "beta"} {
		s := testenv.StartHello(t, name)
		inst := registry.Instance{ID: name, Service: "hello", Address: s.Addr, Zone: "z-" + name, Version: "v7", Weight: 3,
			Tags: []string{"canary"}, Metadata: map[string]string{"owner": "team-" + name}}
		if err := reg.Register(t.Context(), inst); err != nil {
			t.Fatal(err)
		}
	}
	cache := resolver.NewCache(resolver.WithLinger(0))
	t.Cleanup(func() { cache.Close() })
	cc, err := grpc.NewClient("wayfinder:///hello", grpc.WithResolvers(resolver.NewBuilder(reg, resolver.WithCache(cache))),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_outlier_ejection":{"child":[{"wayfinder_p2c_ewma":{}}]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	for range 10 { // give P2C some latency samples
		if _, err := hellopb.NewHelloServiceClient(cc).SayHello(t.Context(), &hellopb.HelloRequest{}, grpc.WaitForReady(true)); err != nil {
			t.Fatal(err)
		}
	}
	h := debug.NewHandler(debug.WithCache(cache))
	h.AddClientConn("hello-client", cc)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, store
}

func TestJSON(t *testing.T) {
	srv, store := setup(t)
	get := func() debug.View {
		resp, err := http.Get(srv.URL + "?format=json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v debug.View
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("JSON view: %v (%s)", err, resp.Header.Get("Content-Type"))
		}
		return v
	}
	v := get()
	if len(v.Watches) != 1 || len(v.Watches[0].Instances) != 2 || !v.Watches[0].Fresh || v.Watches[0].Resolvers != 1 {
		t.Fatalf("JSON watches = %+v", v.Watches)
	}
	if len(v.ClientConns) != 1 || v.ClientConns[0].State != "READY" {
		t.Fatalf("JSON client conns = %+v", v.ClientConns)
	}
	policies := map[string]debugBalancer{}
	for _, b := range v.Balancers {
		policies[b.Policy] = debugBalancer{len(b.Endpoints), b.Endpoints}
	}
	if p := policies["p2c"]; p.n != 2 || p.eps[0].Stats["ewma_ms"] == "" {
		t.Fatalf("JSON balancers = %+v; want the P2C child with 2 endpoints and their EWMA", v.Balancers)
	}
	if o := policies["outlier"]; o.n != 2 || o.eps[0].Stats["ejected"] != "false" {
		t.Fatalf("JSON balancers = %+v; want the outlier parent with 2 endpoints in rotation", v.Balancers)
	}
	store.SetOutage(errors.New("registry on fire"))
	deadline := time.Now().Add(5 * time.Second)
	for v = get(); v.Watches[0].Fresh; v = get() {
		if time.Now().After(deadline) {
			t.Fatal("the view never turned stale during an outage")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(v.Watches[0].LastError, "registry on fire") || len(v.Watches[0].Instances) != 2 {
		t.Fatalf("during an outage: %+v; want the error and the 2 kept instances", v.Watches[0])
	}
	resp, err := http.Post(srv.URL, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST = %d, want 405", resp.StatusCode)
	}
}

// TestPageInBrowser loads the page in a real headless Chromium, checks
// what a person would read, and keeps a screenshot.
func TestPageInBrowser(t *testing.T) {
	chrome := testenv.Binary(t, "WAYFINDER_CHROMIUM", "chromium")
	srv, store := setup(t)
	store.SetOutage(errors.New("registry on fire"))

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 800))
	actx, acancel := chromedp.NewExecAllocator(t.Context(), opts...)
	defer acancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, tcancel := context.WithTimeout(ctx, 60*time.Second)
	defer tcancel()

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL), chromedp.WaitVisible(chromedp.CSS(`section.watch`))); err != nil {
		t.Fatalf("headless Chromium: %v", err)
	}
	body, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`body`)))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	for _, want := range []string{"Wayfinder discovery", "hello", "alpha", "beta", "z-alpha", "owner=team-beta", "canary", "stale", "registry on fire", "hello-client", "READY", "p2c", "ewma_ms=", "inflight=", "outlier", "ejected=false"} {
		if !strings.Contains(body, want) {
			t.Errorf("page text lacks %q:\n%s", want, body)
		}
	}
	if len(png) < 1000 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot is %d bytes, not a PNG", len(png))
	}
	dir := os.Getenv("WAYFINDER_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "debug-page.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

type debugBalancer struct {
	n   int
	eps []inspect.Endpoint
}
