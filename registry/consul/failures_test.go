package consul_test

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

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// slack is what a call may take past its bound on a loaded machine.
const slack = 3 * time.Second

// serve starts an HTTP server that answers every request with h; it is
// not Consul, and is used only for answers no real agent gives.
func serve(t *testing.T, h http.HandlerFunc) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// call is one call to the agent with a context without deadline.
type call struct {
	name string
	do   func(r *consul.Registry, svc string) error
}

var calls = []call{
	{"Register", func(r *consul.Registry, svc string) error {
		return r.Register(context.Background(), registrytest.MakeInstance(svc, 1))
	}},
	{"RegisterWithHealth", func(r *consul.Registry, svc string) error {
		return r.RegisterWithHealth(context.Background(), registrytest.MakeInstance(svc, 2), nil)
	}},
	{"Deregister", func(r *consul.Registry, svc string) error {
		return r.Deregister(context.Background(), registrytest.MakeInstance(svc, 3))
	}},
	{"Lookup", func(r *consul.Registry, svc string) error {
		_, err := r.Lookup(context.Background(), svc)
		return err
	}},
	{"Services", func(r *consul.Registry, _ string) error {
		_, err := r.Services(context.Background())
		return err
	}},
	{"Watch+Next", func(r *consul.Registry, svc string) error {
		w, err := r.Watch(context.Background(), svc)
		if err != nil {
			return err
		}
		defer w.Close()
		_, err = w.Next(context.Background())
		return err
	}},
}

// TestUnavailableCauses: against an agent that refuses the connection,
// one that accepts it and never answers, and servers that are not
// Consul, every call made with context.Background() returns within
// DefaultTimeout with an UnavailableError that names the agent and says
// which it was.
func TestUnavailableCauses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		addr   func(t *testing.T) string
		cause  registry.Cause
		detail string // in every error's text
	}{
		{"refused", func(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) },
			registry.CauseRefused, "connection refused"},
		{"frozen", func(t *testing.T) string { return registrytest.NewFrozenListener(t) },
			registry.CauseNoAnswer, "no answer within 5s"},
		{"404 everywhere", func(t *testing.T) string { return serve(t, http.NotFound) },
			registry.CauseNotRegistry, "404 page not found"},
		{"HTML everywhere", func(t *testing.T) string {
			return serve(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				fmt.Fprint(w, "<!doctype html><html><title>Welcome to nginx!</title></html>")
			})
		}, registry.CauseNotRegistry, "Welcome to nginx"},
		{"JSON of another shape", func(t *testing.T) string {
			return serve(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet {
					http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("X-Consul-Index", "7")
				fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1"}`)
			})
		}, registry.CauseNotRegistry, ""},
		{"no leader", func(t *testing.T) string {
			return serve(t, func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "No cluster leader", http.StatusInternalServerError)
			})
		}, registry.CauseServer, "No cluster leader"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.addr(t)
			r := newReg(t, addr)
			want := "consul://" + addr
			var wg sync.WaitGroup
			for _, c := range calls {
				if tc.name == "JSON of another shape" && c.name != "Lookup" && c.name != "Services" && c.name != "Watch+Next" {
					continue // writes get a 405 there, which is Consul-like enough
				}
				wg.Go(func() {
					start := time.Now()
					err := c.do(r, "causes")
					took := time.Since(start)
					var ue *registry.UnavailableError
					if !errors.As(err, &ue) || !errors.Is(err, registry.ErrUnavailable) {
						t.Errorf("%s = %v (after %v), want a *registry.UnavailableError", c.name, err, took)
						return
					}
					if ue.Cause != tc.cause || ue.Registry != want || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tc.detail) {
						t.Errorf("%s = %v\n(cause %v, registry %q); want cause %v naming %q, saying %q", c.name, err, ue.Cause, ue.Registry, tc.cause, want, tc.detail)
					}
					if took > consul.DefaultTimeout+slack {
						t.Errorf("%s took %v, want at most DefaultTimeout %v (+%v)", c.name, took, consul.DefaultTimeout, slack)
					}
					t.Logf("%s: %v: %v", c.name, took.Round(time.Millisecond), err)
				})
			}
			wg.Wait()
		})
	}
}

// TestDeregisterNot404: a server that answers 404 to everything is not an
// agent that has forgotten the service: Deregister fails instead of
// reporting success.
func TestDeregisterNot404(t *testing.T) {
	r := newReg(t, serve(t, http.NotFound))
	err := r.Deregister(context.Background(), registrytest.MakeInstance("not404", 1))
	var ue *registry.UnavailableError
	if !errors.As(err, &ue) || ue.Cause != registry.CauseNotRegistry {
		t.Fatalf("Deregister against a 404 server = %v, want CauseNotRegistry", err)
	}
}

// TestCallerDeadline: a context with a deadline is the bound, longer or
// shorter than the default, and the error says so.
func TestCallerDeadline(t *testing.T) {
	r := newReg(t, registrytest.NewFrozenListener(t))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Lookup(ctx, "deadline")
	var ue *registry.UnavailableError
	if !errors.As(err, &ue) || ue.Cause != registry.CauseNoAnswer || ue.Bound > 500*time.Millisecond || ue.Bound == 0 {
		t.Fatalf("Lookup with a 500ms deadline against a frozen agent = %v, want CauseNoAnswer with a bound of at most 500ms", err)
	}
	if took := time.Since(start); took > 500*time.Millisecond+slack {
		t.Fatalf("Lookup with a 500ms deadline took %v", took)
	}
	// WithTimeout changes the default.
	r2 := newReg(t, registrytest.NewFrozenListener(t), consul.WithTimeout(300*time.Millisecond))
	start = time.Now()
	err = r2.Register(context.Background(), registrytest.MakeInstance("deadline", 1))
	if !errors.As(err, &ue) || ue.Cause != registry.CauseNoAnswer || ue.Bound != 300*time.Millisecond {
		t.Fatalf("Register with WithTimeout(300ms) against a frozen agent = %v, want CauseNoAnswer within 300ms", err)
	}
	if took := time.Since(start); took > 300*time.Millisecond+slack {
		t.Fatalf("Register with WithTimeout(300ms) took %v", took)
	}
}

// TestFrozenAgentThaws: a real agent behind a proxy that freezes. While
// frozen, Register with context.Background() fails within the bound
// naming the proxy's address, and a watch reports the outage within its
// liveness bound; once thawed, the registration that kept retrying is
// made and the watch shows it.
func TestFrozenAgentThaws(t *testing.T) {
	p := registrytest.NewProxy(t, shared.HTTPAddr())
	r := newReg(t, p.Addr())
	svc := "frozen-thaw"
	w := mustWatch(t, r, svc)
	nextUntil(t, w, 20*time.Second, "the empty set", func(got []registry.Instance) bool { return len(got) == 0 })

	p.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			p.Thaw()
		}
	}()
	inst := registrytest.MakeInstance(svc, 1)
	start := time.Now()
	err := r.Register(context.Background(), inst)
	took := time.Since(start)
	var ue *registry.UnavailableError
	if !errors.As(err, &ue) || ue.Cause != registry.CauseNoAnswer || ue.Registry != "consul://"+p.Addr() {
		t.Fatalf("Register with the agent frozen = %v, want CauseNoAnswer naming consul://%s", err, p.Addr())
	}
	if took > consul.DefaultTimeout+slack {
		t.Fatalf("Register with the agent frozen took %v, want at most %v", took, consul.DefaultTimeout)
	}
	ctx := ctxT(t, consul.DefaultUnavailableAfter+slack)
	if got, err := w.Next(ctx); !errors.As(err, &ue) || ue.Cause != registry.CauseNoAnswer {
		t.Fatalf("Next() with the agent frozen = %v, %v; want CauseNoAnswer within %v", ids(got), err, consul.DefaultUnavailableAfter)
	}

	p.Thaw()
	thawed = true
	nextUntil(t, w, 20*time.Second, "the instance registered while frozen", func(got []registry.Instance) bool { return sameIDs(got, inst.ID) })
	if s := r.Status(inst); s.State != registry.StateRegistered {
		t.Fatalf("Status after the thaw = %v, want registered", s)
	}
	if err := r.Deregister(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Deregister after the thaw = %v", err)
	}
}
