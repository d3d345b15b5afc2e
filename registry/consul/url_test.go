package consul_test

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/cctest"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

func TestURLs(t *testing.T) {
	good := []string{
		"consul://127.0.0.1:8500",
		"consul://127.0.0.1:8500/",
		"consul://",
		"consul://127.0.0.1:8500?dc=dc1",
		"consul://127.0.0.1:8500?dc=dc1,dc2&tag=v2,canary&warning=true",
		"consul://127.0.0.1:8500?stale=true",
		"consul://127.0.0.1:8500?stale=true&cached=true&near=_agent",
		"consul://127.0.0.1:8500?consistent=true&wait=30s",
		"consul://127.0.0.1:8500?check=ttl,grpc&ttl=9s&interval=2s",
		"consul://127.0.0.1:8500?check=grpc",
		"consul://127.0.0.1:8500?tls=false",
		"consul://[::1]:8500",
		"consul://localhost:8500",
	}
	for _, raw := range good {
		if err := registry.ValidateURL(raw); err != nil {
			t.Errorf("ValidateURL(%q) = %v, want nil", raw, err)
		}
		r, err := registry.Open(context.Background(), raw)
		if err != nil {
			t.Errorf("Open(%q) = %v, want nil", raw, err)
			continue
		}
		r.Close()
	}
	bad := map[string]string{
		"consul://h:8500?token=secret":                "known parameters: dc, tag",
		"consul://h:8500?dc=a&dc=b":                   "given 2 times",
		"consul://h:8500?dc=":                         "parameter dc is empty",
		"consul://h:8500?tag=a,,b":                    "empty element",
		"consul://h:8500?stale=maybe":                 "want stale=true or stale=false",
		"consul://h:8500?stale=1":                     "want stale=true or stale=false",
		"consul://h:8500?stale=true&consistent=true":  "exclude each other",
		"consul://h:8500?cached=true&consistent=true": "cache",
		// One query reader for every backend: ';' is an error, not two
		// settings silently dropped, and a key alone or with an empty
		// value is an error naming it.
		"consul://h:8500?dc=a;tag=b":   "';' in the query; separate parameters with '&'",
		"consul://h:8500?stale":        "parameter stale has no value; want stale=true or stale=false",
		"consul://h:8500?tls":          "parameter tls has no value; want tls=true or tls=false",
		"consul://h:8500?ttl=":         "parameter ttl is empty",
		"consul://h:8500?wait=forever": "positive duration",
		"consul://h:8500?wait=11m":     "out of range",
		"consul://h:8500?wait=-1s":     "positive duration",
		"consul://h:8500?check=http":   "ttl, grpc",
		"consul://h:8500?ttl=10ms":     "below 1s",
		"consul://h:8500?near=":        "node name",
		"consul://user:pw@h:8500":      "credentials",
		"consul://h:8500/orders":       "has path",
		"consul://h:8500#frag":         "fragment",
		"consulx://h:8500":             "unknown scheme",
		"consul://,,,":                 "want the agent's host:port",
		"consul://:8500":               "empty host",
		"consul://h":                   "missing port",
		"consul://h:0":                 "not in 1..65535",
		"consul://h:99999":             "not in 1..65535",
		"consul://a:8500,b:8500":       "want the agent's host:port",
	}
	for raw, want := range bad {
		err := registry.ValidateURL(raw)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateURL(%q) = %v, want an error containing %q", raw, err, want)
		}
		if _, err := registry.Open(context.Background(), raw); err == nil {
			t.Errorf("Open(%q) = nil error", raw)
		}
		if strings.Contains(raw, "secret") || strings.Contains(raw, "pw@") {
			if err != nil && (strings.Contains(err.Error(), "=secret") || strings.Contains(err.Error(), ":pw@")) {
				t.Errorf("ValidateURL(%q) error leaks the secret: %v", raw, err)
			}
		}
	}
}

// TestURLRules: consul URLs read their query by the rules every backend
// shares.
func TestURLRules(t *testing.T) {
	registrytest.CheckURLRules(t, "consul://127.0.0.1:8500", map[string]string{
		"dc": "dc1,dc2", "tag": "v2", "warning": "true", "stale": "true", "consistent": "true", "cached": "true",
		"near": "_agent", "wait": "30s", "timeout": "2s", "tls": "true", "check": "ttl,grpc", "ttl": "10s", "interval": "2s",
	})
}

// TestOpenByURL: the scheme works end to end against the real agent,
// with the target form the resolver uses.
func TestOpenByURL(t *testing.T) {
	svc := registrytest.ServiceName(t)
	tgt, err := registry.ParseTarget("consul://" + shared.HTTPAddr() + "/" + svc + "?stale=true")
	if err != nil {
		t.Fatalf("ParseTarget = %v", err)
	}
	r, err := registry.OpenURL(t.Context(), tgt.Registry)
	if err != nil {
		t.Fatalf("OpenURL(%v) = %v", tgt.Registry, err)
	}
	defer r.Close()
	inst := registrytest.MakeInstance(svc, 1)
	if err := r.Register(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Register = %v", err)
	}
	lookupUntil(t, r, svc, 10*time.Second, "the instance", func(in []registry.Instance) bool { return sameIDs(in, inst.ID) })
	if err := r.Deregister(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Deregister = %v", err)
	}
}

// TestEnvAddress: an empty host means CONSUL_HTTP_ADDR.
func TestEnvAddress(t *testing.T) {
	t.Setenv("CONSUL_HTTP_ADDR", shared.HTTPAddr())
	r, err := registry.Open(t.Context(), "consul://")
	if err != nil {
		t.Fatalf("Open(consul://) = %v", err)
	}
	defer r.Close()
	if _, err := r.Lookup(ctxT(t, 10*time.Second), "anything"); err != nil {
		t.Fatalf("Lookup through CONSUL_HTTP_ADDR = %v", err)
	}
	t.Setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1") // nothing listens there
	r2, err := registry.Open(t.Context(), "consul://")
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	defer r2.Close()
	if _, err := r2.Lookup(ctxT(t, 10*time.Second), "anything"); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Lookup with nothing listening = %v, want ErrUnavailable", err)
	}
}

func FuzzURL(f *testing.F) {
	for _, s := range []string{
		"consul://127.0.0.1:8500?dc=dc1&tag=a,b&stale",
		"consul://h?check=ttl,grpc&ttl=3s&interval=1s&wait=1m",
		"consul://h?near=_agent&cached=1&warning=0&tls=true",
		"consul://[::1]:8500?consistent",
		"consul://h/%zz?x=%",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		verr := registry.ValidateURL(u.String())
		r, oerr := registry.OpenURL(context.Background(), u)
		if oerr == nil {
			r.Close()
		}
		if u.Scheme == "consul" && (verr == nil) != (oerr == nil) {
			t.Fatalf("ValidateURL(%q) = %v but Open = %v", raw, verr, oerr)
		}
		if verr != nil && u.Scheme == "consul" && !errors.Is(verr, registry.ErrInvalidURL) {
			t.Fatalf("ValidateURL(%q) = %v, want ErrInvalidURL", raw, verr)
		}
	})
}

// TestOpenByURLWithLogger: a logger set on a URLOpener reaches a
// backend opened by URL through a mux of the program's.
func TestOpenByURLWithLogger(t *testing.T) {
	var buf cctest.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	mux := new(registry.URLMux)
	mux.RegisterScheme(consul.Scheme, &consul.URLOpener{Logger: logger})
	r, err := mux.Open(t.Context(), "consul://"+shared.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	inst := registrytest.MakeInstance(registrytest.ServiceName(t), 1)
	if err := r.Register(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Register = %v", err)
	}
	defer r.Deregister(ctxT(t, 10*time.Second), inst)
	if !strings.Contains(buf.String(), "consul: registered") || !strings.Contains(buf.String(), inst.ID) {
		t.Errorf("the opener's logger did not receive the registration; it got:\n%s", buf.String())
	}
}

// TestOpenReturnsTrueNil: a failing open returns a nil interface, and
// Close is safe twice on whatever opened.
func TestOpenReturnsTrueNil(t *testing.T) {
	registrytest.CheckOpen(t,
		[]string{"consul://127.0.0.1:1", "consul://", "consul://127.0.0.1:1?check=grpc&dc=a,b"},
		[]string{
			"consul://127.0.0.1:8500?ttl=0s",
			"consul://127.0.0.1:8500?wait=abc",
			"consul://127.0.0.1:8500?wait=11m",
			"consul://127.0.0.1:8500?dc=",
			"consul://127.0.0.1:8500?nope=1",
		})
}

// TestURLTimeout: ?timeout= bounds a call against an agent that never
// answers, as etcd's and Kubernetes's do (the parameter was missing).
func TestURLTimeout(t *testing.T) {
	r, err := consul.Open("consul://" + registrytest.NewFrozenListener(t) + "?timeout=300ms")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	err = r.Register(context.Background(), registrytest.MakeInstance("url-timeout", 1))
	var ue *registry.UnavailableError
	if !errors.As(err, &ue) || ue.Cause != registry.CauseNoAnswer || ue.Bound != 300*time.Millisecond {
		t.Fatalf("Register with ?timeout=300ms against a frozen agent = %v, want no answer within 300ms", err)
	}
}
