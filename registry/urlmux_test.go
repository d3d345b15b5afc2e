package registry_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"testing"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
)

// loggingOpener opens memory registries and logs each open to its
// logger, which WithLogger sets on a copy.
type loggingOpener struct{ log *slog.Logger }

var _ driver.LoggerOpener = loggingOpener{}

func (o loggingOpener) OpenRegistryURL(_ context.Context, u *url.URL) (registry.Registry, error) {
	if o.log != nil {
		o.log.Info("opened", "url", u.String())
	}
	return memory.New(), nil
}

func (loggingOpener) ValidateURL(*url.URL) error { return nil }

func (o loggingOpener) WithLogger(l *slog.Logger) registry.Opener { o.log = l; return o }

// plainOpener has no WithLogger.
type plainOpener struct{}

func (plainOpener) OpenRegistryURL(context.Context, *url.URL) (registry.Registry, error) {
	return memory.New(), nil
}

func (plainOpener) ValidateURL(*url.URL) error { return nil }

// TestOpenWithLogger: the logger reaches a backend whose opener takes
// one, through the mux alone (no driver function), and the opener
// registered in the mux is left as it was.
func TestOpenWithLogger(t *testing.T) {
	var mux registry.URLMux
	mux.RegisterScheme("logs", loggingOpener{})
	mux.RegisterScheme("plain", plainOpener{})
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))

	reg, err := mux.OpenWithLogger(t.Context(), "logs://host", l)
	if err != nil {
		t.Fatalf(`OpenWithLogger("logs://host") = %v`, err)
	}
	reg.Close()
	if !bytes.Contains(buf.Bytes(), []byte("msg=opened url=logs://host")) {
		t.Errorf(`after OpenWithLogger("logs://host", l), l holds %q; want the backend's "opened" line`, buf.String())
	}

	buf.Reset()
	reg, err = mux.Open(t.Context(), "logs://host")
	if err != nil {
		t.Fatalf(`Open("logs://host") = %v`, err)
	}
	reg.Close()
	if buf.Len() != 0 {
		t.Errorf("Open after OpenWithLogger logged %q to the logger; the registered opener must be unchanged", buf.String())
	}

	for _, l := range []*slog.Logger{l, nil} {
		reg, err = mux.OpenWithLogger(t.Context(), "plain://host", l)
		if err != nil {
			t.Fatalf(`OpenWithLogger("plain://host", %v) = %v; an opener without WithLogger opens as with Open`, l, err)
		}
		reg.Close()
	}
	if _, err := mux.OpenWithLogger(t.Context(), "nope://host", l); !errors.Is(err, registry.ErrUnknownScheme) {
		t.Errorf(`OpenWithLogger("nope://host") = %v, want ErrUnknownScheme`, err)
	}
}
