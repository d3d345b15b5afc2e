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

// muxRecorder records the mux WithMux gives it, for the opens and
// validations it then makes.
type muxRecorder struct {
	got *[]*registry.URLMux
	mux *registry.URLMux
}

var _ driver.MuxOpener = muxRecorder{}

func (o muxRecorder) OpenRegistryURL(context.Context, *url.URL) (registry.Registry, error) {
	*o.got = append(*o.got, o.mux)
	return memory.New(), nil
}

func (o muxRecorder) ValidateURL(*url.URL) error {
	*o.got = append(*o.got, o.mux)
	return nil
}

func (o muxRecorder) WithMux(m *registry.URLMux) registry.Opener { o.mux = m; return o }

// TestOpenGivesTheMux: an opener with WithMux (a registry composed of
// others, registry/multi) is given the mux that opens or validates its
// URL, whichever way, so that it opens its members through the same one.
func TestOpenGivesTheMux(t *testing.T) {
	var got []*registry.URLMux
	var mux registry.URLMux
	mux.RegisterScheme("composed", muxRecorder{got: &got})
	for name, call := range map[string]func() error{
		"Open": func() error {
			r, err := mux.Open(t.Context(), "composed://")
			if err == nil {
				r.Close()
			}
			return err
		},
		"OpenWithLogger": func() error {
			r, err := mux.OpenWithLogger(t.Context(), "composed://", slog.Default())
			if err == nil {
				r.Close()
			}
			return err
		},
		"OpenURL": func() error {
			r, err := mux.OpenURL(t.Context(), &url.URL{Scheme: "composed"})
			if err == nil {
				r.Close()
			}
			return err
		},
		"ValidateURL": func() error { return mux.ValidateURL("composed://") },
	} {
		got = nil
		if err := call(); err != nil {
			t.Fatalf("%s(composed://) = %v", name, err)
		}
		if len(got) != 1 || got[0] != &mux {
			t.Errorf("%s(composed://): the opener was given the muxes %v, want [%p]", name, got, &mux)
		}
	}
}
