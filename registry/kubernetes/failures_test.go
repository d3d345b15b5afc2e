package kubernetes_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/kubernetes"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// slack is what a call may take past its bound on a loaded machine.
const slack = 3 * time.Second

func regAt(t *testing.T, cfg *rest.Config) *kubernetes.Registry {
	t.Helper()
	r, err := kubernetes.New(kubernetes.WithRESTConfig(cfg))
	if err != nil {
		t.Fatalf("kubernetes.New() = %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// serve starts an HTTP server that answers every request with h: not an
// API server, for answers a real one never gives.
func serve(t *testing.T, h http.HandlerFunc) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestUnavailableCauses: against an API server address that refuses the
// connection, one that accepts it and never answers, and servers that
// are not an API server, Register, Deregister, Lookup and a watch's
// first Next, with context.Background(), return within DefaultTimeout
// with an UnavailableError that names the server and says which it was.
func TestUnavailableCauses(t *testing.T) {
	inst := registry.Instance{ID: "vm-1", Service: "causes", Address: "10.244.40.1:7000"}
	calls := map[string]func(r *kubernetes.Registry) error{
		"Register":   func(r *kubernetes.Registry) error { return r.Register(context.Background(), inst) },
		"Deregister": func(r *kubernetes.Registry) error { return r.Deregister(context.Background(), inst) },
		"Lookup": func(r *kubernetes.Registry) error {
			_, err := r.Lookup(context.Background(), "causes")
			return err
		},
		"Watch+Next": func(r *kubernetes.Registry) error {
			w, err := r.Watch(context.Background(), "causes")
			if err != nil {
				return err
			}
			defer w.Close()
			_, err = w.Next(context.Background())
			return err
		},
	}
	for _, tc := range []struct {
		name   string
		cfg    func(t *testing.T) (*rest.Config, string)
		cause  registry.Cause
		detail string
	}{
		{"refused", func(t *testing.T) (*rest.Config, string) {
			addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			return restConfig("https://"+addr, testenv.KubeAdminToken), addr
		}, registry.CauseRefused, "connection refused"},
		{"frozen", func(t *testing.T) (*rest.Config, string) {
			addr := registrytest.NewFrozenListener(t)
			return restConfig("https://"+addr, testenv.KubeAdminToken), addr
		}, registry.CauseNoAnswer, "no answer within 5s"},
		{"404 everywhere", func(t *testing.T) (*rest.Config, string) {
			addr := serve(t, http.NotFound)
			return &rest.Config{Host: "http://" + addr}, addr
		}, registry.CauseNotRegistry, "404 page not found"},
		{"HTML everywhere", func(t *testing.T) (*rest.Config, string) {
			addr := serve(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				fmt.Fprint(w, "<html><title>Welcome to nginx!</title></html>")
			})
			return &rest.Config{Host: "http://" + addr}, addr
		}, registry.CauseNotRegistry, "Welcome to nginx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, addr := tc.cfg(t)
			r := regAt(t, cfg)
			want := "kubernetes://" + addr
			var wg sync.WaitGroup
			for name, call := range calls {
				wg.Go(func() {
					start := time.Now()
					err := call(r)
					took := time.Since(start)
					var ue *registry.UnavailableError
					if !errors.As(err, &ue) || !errors.Is(err, registry.ErrUnavailable) {
						t.Errorf("%s = %v (after %v), want a *registry.UnavailableError", name, err, took)
						return
					}
					if ue.Cause != tc.cause || ue.Registry != want || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tc.detail) {
						t.Errorf("%s = %v\n(cause %v, registry %q); want cause %v naming %q, saying %q", name, err, ue.Cause, ue.Registry, tc.cause, want, tc.detail)
					}
					if took > kubernetes.DefaultTimeout+slack {
						t.Errorf("%s took %v, want at most DefaultTimeout %v (+%v)", name, took, kubernetes.DefaultTimeout, slack)
					}
					t.Logf("%s: %v: %v", name, took.Round(time.Millisecond), err)
				})
			}
			wg.Wait()
		})
	}
}

// TestFrozenAPIServer: the real API server behind a proxy that freezes.
// While frozen, Register with context.Background() fails within the
// bound naming the proxy, and an established watch reports the outage
// within its liveness bound (twice the timeout); once thawed, the watch
// resumes and a Register is made.
func TestFrozenAPIServer(t *testing.T) {
	a := newAdmin(t)
	const svc = "frozen"
	a.createService(t, svc)
	p := registrytest.NewProxy(t, strings.TrimPrefix(shared.URL, "https://"))
	r := regAt(t, restConfig("https://"+p.Addr(), testenv.KubeAdminToken))
	w, err := r.Watch(t.Context(), svc)
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	defer w.Close()
	nextUntil(t, w, 20*time.Second, nil, nil)

	p.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			p.Thaw()
		}
	}()
	inst := registry.Instance{ID: "vm-1", Service: svc, Address: "10.244.41.1:50051"}
	start := time.Now()
	err = r.Register(context.Background(), inst)
	var ue *registry.UnavailableError
	if !errors.As(err, &ue) || ue.Cause != registry.CauseNoAnswer || ue.Registry != "kubernetes://"+p.Addr() {
		t.Fatalf("Register with the API server frozen = %v, want CauseNoAnswer naming kubernetes://%s", err, p.Addr())
	}
	if took := time.Since(start); took > kubernetes.DefaultTimeout+slack {
		t.Fatalf("Register with the API server frozen took %v", took)
	}
	ctx := ctxT(t, 2*kubernetes.DefaultTimeout+slack)
	got, err := w.Next(ctx)
	if !errors.As(err, &ue) || ue.Cause != registry.CauseNoAnswer {
		t.Fatalf("Next() with the API server frozen = %v, %v; want CauseNoAnswer within %v", got, err, 2*kubernetes.DefaultTimeout)
	}
	t.Logf("watch reported %v after the freeze: %v", time.Since(start).Round(time.Millisecond), err)

	p.Thaw()
	thawed = true
	if err := r.Register(ctxT(t, 20*time.Second), inst); err != nil {
		t.Fatalf("Register after the thaw = %v", err)
	}
	nextUntil(t, w, 30*time.Second, []string{inst.Address}, nil)
	if err := r.Deregister(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Deregister after the thaw = %v", err)
	}
}
