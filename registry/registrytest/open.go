package registrytest

import (
	"context"
	"testing"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// CheckOpen checks what every backend's opener promises about the
// values it returns, through registry.Open: each URL in bad fails with a
// nil Registry interface, not a typed nil pointer that a caller's
// `if r != nil { r.Close() }` would call into; each URL in good opens a
// Registry whose Close is safe to call twice. Opening must not block on
// the network, so good URLs may name servers that do not exist.
func CheckOpen(t *testing.T, good, bad []string) {
	t.Helper()
	for _, raw := range bad {
		r, err := registry.Open(context.Background(), raw)
		if err == nil {
			t.Errorf("Open(%q) = %v, nil; want an error", raw, r)
			if r != nil {
				r.Close()
			}
			continue
		}
		if r != nil {
			t.Errorf("Open(%q) = %#v, %v; want a nil Registry with the error", raw, r, err)
		}
	}
	for _, raw := range good {
		r, err := registry.Open(context.Background(), raw)
		if err != nil {
			t.Errorf("Open(%q) = %v, want nil", raw, err)
			continue
		}
		if r == nil {
			t.Errorf("Open(%q) = nil, nil; want a Registry", raw)
			continue
		}
		closeTwice(t, raw, r)
	}
}

// closeTwice closes r twice; the second Close must neither panic nor
// block, and must not report an error the first did not.
func closeTwice(t *testing.T, raw string, r registry.Registry) {
	t.Helper()
	first := r.Close()
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("Open(%q): second Close panicked: %v", raw, p)
		}
	}()
	if err := r.Close(); err != nil && first == nil {
		t.Errorf("Open(%q): second Close() = %v after a first that returned nil", raw, err)
	}
}
