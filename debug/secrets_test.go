package debug_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/debug"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/cctest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// TestSecretsNeverShown: a registry's secret (Consul's ACL token, etcd's
// password) appears in no error, no log line (at Debug) and no debug
// page, whether the registry answers, refuses, never answers, or is
// something else. The clients get the secret through options, as the
// docs say secrets travel.
func TestSecretsNeverShown(t *testing.T) {
	const secret = "s3cr3t-PW-4711"
	var logs cctest.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	agent, member := testenv.StartConsul(t), testenv.StartEtcd(t)
	notRegistry := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notRegistry.Close)
	refused := func() string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }
	frozen := registrytest.NewFrozenListener(t)
	const bound = 300 * time.Millisecond

	opens := map[string]func(addr string) (registry.Registry, error){
		"consul": func(addr string) (registry.Registry, error) {
			return consul.New(addr, consul.WithToken(secret), consul.WithLogger(log),
				consul.WithTimeout(bound), consul.WithUnavailableAfter(time.Second))
		},
		"etcd": func(addr string) (registry.Registry, error) {
			return etcd.New([]string{addr}, etcd.WithAuth("root", secret), etcd.WithLogger(log),
				etcd.WithTimeout(bound), etcd.WithUnavailableAfter(time.Second))
		},
	}
	addrs := map[string]map[string]string{
		"consul": {"real": agent.HTTPAddr(), "refused": refused(), "frozen": frozen, "not a registry": notRegistry.Listener.Addr().String()},
		"etcd":   {"real": member.Endpoint(), "refused": refused(), "frozen": frozen, "not a registry": notRegistry.Listener.Addr().String()},
	}
	cache := resolver.NewCache(resolver.WithLinger(0), resolver.WithLogger(log))
	t.Cleanup(func() { cache.Close() })
	h := debug.NewHandler(debug.WithCache(cache))
	var shown []string // every error text
	for backend, open := range opens {
		for kind, addr := range addrs[backend] {
			name := backend + " " + kind
			reg, err := open(addr)
			if err != nil {
				shown = append(shown, err.Error())
				continue
			}
			t.Cleanup(func() { reg.Close() })
			inst := registrytest.MakeInstance("secrets", 1)
			ctx := context.Background() // every call bounded by the backend
			if err := reg.Register(ctx, inst); err != nil {
				shown = append(shown, err.Error())
			}
			if _, err := reg.Lookup(ctx, "secrets"); err != nil {
				shown = append(shown, err.Error())
			}
			if sl, ok := reg.(registry.ServiceLister); ok {
				if _, err := sl.Services(ctx); err != nil {
					shown = append(shown, err.Error())
				}
			}
			cc, err := grpc.NewClient("wayfinder:///secrets", append(resolver.NewBuilder(reg, resolver.WithCache(cache)).DialOptions(),
				grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				t.Fatalf("%s: NewClient: %v", name, err)
			}
			t.Cleanup(func() { cc.Close() })
			h.AddClientConn(name, cc)
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			if _, err := hellopb.NewHelloServiceClient(cc).SayHello(rctx, &hellopb.HelloRequest{}); err != nil {
				shown = append(shown, err.Error())
			}
			cancel()
			if err := reg.Deregister(ctx, inst); err != nil {
				shown = append(shown, err.Error())
			}
		}
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for _, q := range []string{"", "?format=json"} {
		resp, err := http.Get(srv.URL + q)
		if err != nil {
			t.Fatal(err)
		}
		page, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		shown = append(shown, string(page))
	}
	if len(shown) < 12 {
		t.Fatalf("only %d errors and pages to look at; the registries that fail must have said something", len(shown))
	}
	for _, s := range append(shown, logs.String()) {
		if strings.Contains(s, secret) {
			t.Errorf("the secret is shown in:\n%s", s)
		}
	}
}
