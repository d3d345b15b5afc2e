package etcd_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

func TestURLs(t *testing.T) {
	t.Setenv(etcd.EnvEndpoints, "")
	good := []string{
		"etcd://127.0.0.1:2379",
		"etcd://127.0.0.1:2379/",
		"etcd://10.0.0.1:2379,10.0.0.2:2379",
		"etcd://[::1]:2379",
		"etcd://etcd-0.etcd:2379?prefix=/x/y&ttl=3s&timeout=2s",
		"etcd://",
		"etcd://h:1?tls=true",
		"etcd://h:1?tls=false",
		"etcd://h:1?format=v1", "etcd://h:1?format=naming",
		// etcd naming targets: relative prefixes and the roots.
		"etcd://h:1?prefix=naming/team-a", "etcd://h:1?prefix=/", "etcd://h:1?prefix=",
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
		"etcd://127.0.0.1:2379?prfix=/x":            "known parameters: format, prefix, timeout, tls, ttl",
		"etcd://127.0.0.1:2379?prefix=x//y":         "empty segments",
		"etcd://127.0.0.1:2379?prefix=/x/":          "trailing slash",
		"etcd://127.0.0.1:2379?prefix=/a&prefix=/b": "given 2 times",
		"etcd://127.0.0.1:2379?ttl=fast":            "ttl",
		"etcd://127.0.0.1:2379?ttl=100ms":           "TTL",
		"etcd://127.0.0.1:2379?timeout=-1s":         "timeout",
		"etcd://127.0.0.1:2379?tls=maybe":           "tls",
		"etcd://127.0.0.1:2379?format=v2":           "want naming or v1",
		"etcd://127.0.0.1:2379?format=":             "parameter format is empty; want format=<naming or v1>",
		"etcd://127.0.0.1:2379?tls":                 "parameter tls has no value; want tls=true or tls=false",
		"etcd://127.0.0.1:2379?tls=1":               "want tls=true or tls=false",
		"etcd://127.0.0.1:2379?ttl=":                "parameter ttl is empty",
		"etcd://127.0.0.1:2379?prefix":              "parameter prefix has no value",
		"etcd://127.0.0.1:2379/hello":               "path",
		"etcd://root:pw@127.0.0.1:2379":             "credentials",
		"etcd://127.0.0.1":                          "127.0.0.1",
		"etcd://127.0.0.1:0":                        "port",
		"etcd://127.0.0.1:2379,":                    "host",
		"etcd://:2379":                              "empty host",
		"etcd://127.0.0.1:2379#frag":                "fragment",
		"etcd://127.0.0.1:2379?a=1;b=2":             "';'",
	}
	for raw, want := range bad {
		err := registry.ValidateURL(raw)
		if !errors.Is(err, registry.ErrInvalidURL) || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateURL(%q) = %v; want ErrInvalidURL mentioning %q", raw, err, want)
		}
		if _, err := registry.Open(context.Background(), raw); !errors.Is(err, registry.ErrInvalidURL) {
			t.Errorf("Open(%q) = %v; want ErrInvalidURL", raw, err)
		}
		if strings.Contains(raw, "pw@") && err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("ValidateURL(%q) = %v; the error leaks the password", raw, err)
		}
	}
}

// TestURLRules: etcd URLs read their query by the rules every backend
// shares; an empty prefix has a meaning (relative naming keys).
func TestURLRules(t *testing.T) {
	t.Setenv(etcd.EnvEndpoints, "")
	registrytest.CheckURLRules(t, "etcd://127.0.0.1:2379", map[string]string{
		"format": "v1", "prefix": "/x", "timeout": "2s", "tls": "true", "ttl": "3s",
	}, "prefix")
}

func TestOptionsOverrideURL(t *testing.T) {
	r, err := etcd.Open("etcd://127.0.0.1:1?prefix=/from-url&ttl=30s", etcd.WithPrefix("/from-option"), etcd.WithTTL(1500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := r.Prefix(); got != "/from-option" {
		t.Errorf("Prefix() = %q, want /from-option", got)
	}
	if got := r.TTL(); got != 2*time.Second {
		t.Errorf("TTL() = %v, want 2s (1.5s rounded up to whole seconds)", got)
	}
}

// TestUnreachableDoesNotBlock opens a registry at a port nobody serves:
// Open and Watch return at once, and every call fails within its own
// bounds with ErrUnavailable.
func TestUnreachableDoesNotBlock(t *testing.T) {
	start := time.Now()
	r, err := etcd.New([]string{"127.0.0.1:1"}, etcd.WithTimeout(500*time.Millisecond), etcd.WithAuth("root", "pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := r.Watch(context.Background(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Errorf("New and Watch took %v; they must not wait for the network", took)
	}
	if set, err := w.Next(ctxFor(t, 10*time.Second)); !errors.Is(err, registry.ErrUnavailable) || set != nil {
		t.Errorf("first Next() with etcd unreachable = %v, %v; want nil and ErrUnavailable", set, err)
	}
	if _, err := r.Lookup(ctxFor(t, 10*time.Second), "svc"); !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("Lookup() with etcd unreachable = %v; want ErrUnavailable", err)
	}
	err = r.Register(ctxFor(t, 2*time.Second), inst("svc", 1))
	if !errors.Is(err, registry.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Register() with etcd unreachable = %v; want ErrUnavailable or a deadline", err)
	}
	if s := r.LeaseState(); s.Healthy() || s.Err == nil {
		t.Errorf("LeaseState() with etcd unreachable = %+v; want unhealthy with an error", s)
	}
}

func TestNewFromClientRejectsClientOptions(t *testing.T) {
	if _, err := etcd.NewFromClient(nil); err == nil {
		t.Error("NewFromClient(nil) = nil error")
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"etcd://127.0.0.1:2379", "etcd://a:1,b:2?prefix=/p&ttl=5s", "etcd://", "etcd://[::1]:2379?tls=1",
		"etcd://h:1?timeout=1h&x=y", "etcd://%zz", "etcd://h:99999", "etcd:opaque", "etcd://h:1/svc",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		u.Scheme = "etcd"
		verr := registry.ValidateURL(u.String())
		r, oerr := etcd.OpenURL(u)
		if (verr == nil) != (oerr == nil) {
			t.Fatalf("ValidateURL(%q) = %v but OpenURL = %v", u, verr, oerr)
		}
		if oerr != nil {
			if !errors.Is(oerr, registry.ErrInvalidURL) && !strings.HasPrefix(oerr.Error(), "etcd:") {
				t.Fatalf("OpenURL(%q) = %v, want ErrInvalidURL or an etcd: error", u, oerr)
			}
			return
		}
		defer r.Close()
		if p := r.Prefix(); !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
			t.Fatalf("OpenURL(%q).Prefix() = %q: not absolute, or has a trailing slash", u, p)
		}
		if ttl := r.TTL(); ttl < time.Second {
			t.Fatalf("OpenURL(%q).TTL() = %v", u, ttl)
		}
	})
}

// TestOpenReturnsTrueNil: a failing open returns a nil interface through
// registry.Open and a nil *Registry from the exported functions, and
// Close is safe twice on whatever opened.
func TestOpenReturnsTrueNil(t *testing.T) {
	t.Setenv(etcd.EnvEndpoints, "")
	bad := []string{
		"etcd://,,,",
		"etcd://:2379",
		"etcd://127.0.0.1:2379?ttl=0s",
		"etcd://127.0.0.1:2379?prefix=x//y",
		"etcd://127.0.0.1:2379?prefix=/x/",
		"etcd://127.0.0.1:2379?timeout=abc",
	}
	good := []string{"etcd://127.0.0.1:1", "etcd://", "etcd://127.0.0.1:1?prefix=/x&ttl=3s"}
	registrytest.CheckOpen(t, good, bad)
	for _, raw := range bad {
		if r, err := etcd.Open(raw); err == nil || r != nil {
			t.Errorf("etcd.Open(%q) = %v, %v; want nil and an error", raw, r, err)
		}
		u, err := url.Parse(raw)
		if err != nil {
			continue
		}
		if r, err := etcd.OpenURL(u); err == nil || r != nil {
			t.Errorf("etcd.OpenURL(%q) = %v, %v; want nil and an error", raw, r, err)
		}
	}
	if r, err := etcd.New([]string{"127.0.0.1:1"}, etcd.WithTTL(0)); err == nil || r != nil {
		t.Errorf("etcd.New(WithTTL(0)) = %v, %v; want nil and an error", r, err)
	}
	r, err := etcd.New([]string{"127.0.0.1:1"}, etcd.WithAuth("root", "pw"))
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	r.Close()
	var none *etcd.Registry
	if err := none.Close(); err != nil { // a typed nil a caller kept anyway
		t.Errorf("(*Registry)(nil).Close() = %v, want nil", err)
	}
}
