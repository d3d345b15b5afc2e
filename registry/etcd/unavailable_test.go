package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// TestUnavailableCauses: against an address where nothing listens, one
// that accepts and never answers, and HTTP servers that answer 404
// (HTTP/1, and HTTP/2 in clear text, as a gRPC client speaks), Register,
// Lookup and a watch's first Next, without a deadline of their own,
// each return within the Registry's timeout with a
// *registry.UnavailableError that names the endpoint and says which it
// is. The refused and 404 cases do not wait for the timeout: their
// cause is not "no answer".
func TestUnavailableCauses(t *testing.T) {
	const timeout = 3 * time.Second
	notFound := func(h2c bool) string {
		s := httptest.NewUnstartedServer(http.NotFoundHandler())
		if h2c {
			s.Config.Protocols = new(http.Protocols)
			s.Config.Protocols.SetHTTP1(true)
			s.Config.Protocols.SetUnencryptedHTTP2(true)
		}
		s.Start()
		t.Cleanup(s.Close)
		return s.Listener.Addr().String()
	}
	for _, tc := range []struct {
		name string
		addr string
		want registry.Cause
	}{
		{"refused", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), registry.CauseRefused},
		{"frozen", registrytest.NewFrozenListener(t), registry.CauseNoAnswer},
		{"http1-404", notFound(false), registry.CauseNotRegistry},
		{"h2c-404", notFound(true), registry.CauseNotRegistry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRegistry(t, []string{tc.addr}, etcd.WithTimeout(timeout), etcd.WithUnavailableAfter(timeout))
			name := "etcd://" + tc.addr
			check := func(call string, took time.Duration, err error) {
				t.Helper()
				t.Logf("%s: %v: %v", call, took.Round(time.Millisecond), err)
				var ue *registry.UnavailableError
				switch {
				case !errors.Is(err, registry.ErrUnavailable) || !errors.As(err, &ue):
					t.Errorf("%s = %v; want a *registry.UnavailableError", call, err)
				case ue.Cause != tc.want:
					t.Errorf("%s = %v; Cause = %v, want %v", call, err, ue.Cause, tc.want)
				case ue.Registry != name || !strings.HasPrefix(err.Error(), name+": "):
					t.Errorf("%s = %q; want it to start with %q", call, err, name+": ")
				}
				if took > timeout+2*time.Second {
					t.Errorf("%s took %v; want at most the timeout, %v (+ slack)", call, took, timeout)
				}
			}
			inst := registrytest.MakeInstance("hello", 1)
			start := time.Now()
			err := r.Register(context.Background(), inst)
			check("Register(context.Background())", time.Since(start), err)
			if err != nil && !strings.Contains(err.Error(), "stays scheduled") {
				t.Errorf("Register = %q; want it to say that the instance stays scheduled", err)
			}
			start = time.Now()
			got, err := r.Lookup(context.Background(), "hello")
			check("Lookup(context.Background())", time.Since(start), err)
			if got != nil {
				t.Errorf("Lookup = %v, want nil with the error", ids(got))
			}
			w, err := r.Watch(context.Background(), "hello")
			if err != nil {
				t.Fatalf("Watch = %v", err)
			}
			defer w.Close()
			ctx, cancel := context.WithTimeout(context.Background(), timeout+2*time.Second)
			defer cancel()
			start = time.Now()
			got, err = w.Next(ctx)
			check("first Next", time.Since(start), err)
			if got != nil {
				t.Errorf("first Next = %v, want nil with the error", ids(got))
			}
		})
	}
}
