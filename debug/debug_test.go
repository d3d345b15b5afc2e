package debug_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
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
	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/zone"
	"github.com/wayfinder-rpc/wayfinder/debug"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// zoneCalls is the number of calls setup makes through the zone-aware
// ClientConn.
const zoneCalls = 7

// setup runs two real servers registered in a memory registry, two
// clients through the resolver (outlier ejection over P2C, and
// zone-aware over weighted round robin in zone z-alpha, counting picks),
// and the debug page on a loopback HTTP server.
func setup(t *testing.T) (*httptest.Server, *memory.Store) {
	t.Cleanup(inspect.CountPicks())
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
	zcc, err := grpc.NewClient("wayfinder:///hello", grpc.WithResolvers(resolver.NewBuilder(reg, resolver.WithCache(cache))),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_zone_aware":{"localZone":"z-alpha","child":[{"wayfinder_weighted_round_robin":{}}]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zcc.Close() })
	// Both zones connect: the page then shows the steady state, all calls
	// local. Until then calls may fail over to z-beta.
	zcc.Connect()
	var zb inspect.Balancer
	if !wait.Until(10*time.Second, func() bool {
		zb = zoneBalancer()
		return zb.Stats["healthy.z-beta"] == "3/3" && zb.Stats["mode"] == "local"
	}) {
		t.Fatalf("zone-aware balancer never reached both zones: %+v", zb)
	}
	for range zoneCalls {
		if _, err := hellopb.NewHelloServiceClient(zcc).SayHello(t.Context(), &hellopb.HelloRequest{}, grpc.WaitForReady(true)); err != nil {
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
	if len(v.Watches) != 1 || len(v.Watches[0].Instances) != 2 || !v.Watches[0].Fresh || v.Watches[0].Resolvers != 2 {
		t.Fatalf("JSON watches = %+v", v.Watches)
	}
	// The memory store's index counts the service's changes: two
	// registrations.
	if v.Watches[0].Index != "2" {
		t.Errorf("JSON watch index = %q, want \"2\"", v.Watches[0].Index)
	}
	resp, err := http.Get(srv.URL + "?format=json")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.Contains(string(raw), `"index": "2"`) {
		t.Errorf("JSON view lacks \"index\": \"2\" (%v):\n%s", err, raw)
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
	if o := policies["outlier"]; o.n != 2 || o.eps[0].Stats["ejected"] != "false" || o.eps[0].State != "READY" {
		t.Fatalf("JSON balancers = %+v; want the outlier parent with 2 READY endpoints in rotation", v.Balancers)
	}
	var zb, child *inspect.Balancer
	for i, b := range v.Balancers {
		switch b.Policy {
		case "zone":
			zb = &v.Balancers[i]
		case "wrr":
			child = &v.Balancers[i]
		}
	}
	if zb == nil || child == nil {
		t.Fatalf("JSON balancers = %+v; want zone-aware and its weighted round robin child", v.Balancers)
	}
	if zb.Stats["local_zone"] != "z-alpha" || zb.Stats["mode"] != "local" || zb.Stats["share.z-alpha"] != "100.0%" || zb.Stats["order"] != "z-alpha > z-beta" {
		t.Errorf("zone-aware stats = %v; want local zone z-alpha taking every call, then z-beta", zb.Stats)
	}
	var picks uint64
	zones := map[string]bool{}
	for _, e := range zb.Endpoints {
		picks += e.Picks
		zones[e.Zone] = e.State == "READY"
	}
	if !zb.CountsPicks || zb.Picks != zoneCalls || picks != zoneCalls || !zones["z-alpha"] || !zones["z-beta"] {
		t.Errorf("zone-aware balancer = %+v; want %d picks and a READY endpoint in each zone", *zb, zoneCalls)
	}
	if child.Parent != zb.ID || child.CountsPicks || len(child.Endpoints) != 1 {
		t.Errorf("zone-aware child = %+v; want a nested balancer with one zone's endpoint, not counting picks", *child)
	}
	store.SetOutage(errors.New("registry on fire"))
	if !wait.Until(5*time.Second, func() bool { v = get(); return !v.Watches[0].Fresh }) {
		t.Fatal("the view never turned stale during an outage")
	}
	if !strings.Contains(v.Watches[0].LastError, "registry on fire") || len(v.Watches[0].Instances) != 2 || v.Watches[0].Index != "2" {
		t.Fatalf("during an outage: %+v; want the error and the 2 kept instances at index 2", v.Watches[0])
	}
	resp, err = http.Post(srv.URL, "text/plain", strings.NewReader("x"))
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
	for _, want := range []string{"Wayfinder discovery", "hello", "alpha", "beta", "z-alpha", "owner=team-beta", "canary", "stale", "registry on fire", "hello-client", "READY", "p2c", "ewma_ms=", "inflight=", "outlier", "ejected=false", "ejections=0"} {
		if !strings.Contains(body, want) {
			t.Errorf("page text lacks %q:\n%s", want, body)
		}
	}
	watchText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`section.watch`)))
	if err != nil {
		t.Fatalf("reading the watch section: %v", err)
	}
	if !strings.Contains(watchText, "registry index 2;") {
		t.Errorf("watch section lacks the memory store's index, 2:\n%s", watchText)
	}
	zoneText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`section.policy-zone`)))
	if err != nil {
		t.Fatalf("reading the zone-aware section: %v", err)
	}
	for _, want := range []string{"zone #", "local_zone=z-alpha", "mode=local", "order=z-alpha > z-beta", "share.z-alpha=100.0%", "share.z-beta=0.0%",
		"healthy.z-beta=3/3", "picks=" + strconv.Itoa(zoneCalls), "z-beta", "alpha", "READY"} {
		if !strings.Contains(zoneText, want) {
			t.Errorf("zone-aware section lacks %q:\n%s", want, zoneText)
		}
	}
	// One wrr child per zone, in the order the zone policy built them,
	// which is not fixed: read them all.
	children, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("section.policy-wrr.nested")).map(s => s.innerText)`))
	if err != nil {
		t.Fatalf("reading the zone-aware children's sections: %v", err)
	}
	for _, zone := range []string{"z-alpha", "z-beta"} {
		found := false
		for _, c := range children {
			found = found || strings.Contains(c, "inside #") && strings.Contains(c, zone)
		}
		if !found {
			t.Errorf("no zone-aware child section marked as a child with %s's endpoint; sections: %q", zone, children)
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

// zoneBalancer returns the zone-aware balancer as package inspect sees
// it, or a zero Balancer before one is built.
func zoneBalancer() inspect.Balancer {
	for _, b := range inspect.Balancers() {
		if b.Policy == "zone" {
			return b
		}
	}
	return inspect.Balancer{}
}

type debugBalancer struct {
	n   int
	eps []inspect.Endpoint
}
