package driver

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/wayfinder-rpc/wayfinder/internal/urlcheck"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// RegisterScheme makes o the opener of scheme in registry.DefaultURLMux;
// backends call it from init. It panics on a scheme registered twice.
func RegisterScheme(scheme string, o registry.Opener) {
	registry.DefaultURLMux().RegisterScheme(scheme, o)
}

// LoggerOpener is an optional interface of a registry.Opener: a copy of
// the opener whose registries log to l. The backends' URLOpener structs
// implement it, so that app can give its logger to a backend it opens by
// URL without knowing which.
type LoggerOpener interface {
	registry.Opener
	WithLogger(l *slog.Logger) registry.Opener
}

// OpenWithLogger opens rawURL with mux, giving the backend l for its
// logs if its opener is a LoggerOpener.
func OpenWithLogger(ctx context.Context, mux *registry.URLMux, rawURL string, l *slog.Logger) (registry.Registry, error) {
	if err := mux.ValidateURL(rawURL); err != nil {
		return nil, err
	}
	u, _ := url.Parse(rawURL) // ValidateURL parsed it
	o := mux.Opener(u.Scheme)
	if lo, ok := o.(LoggerOpener); ok && l != nil {
		o = lo.WithLogger(l)
	}
	r, err := o.OpenRegistryURL(ctx, u)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// ValidateURL checks a registry URL for a backend: the parts every
// registry URL shares (a scheme, no credentials, no path, no fragment),
// that its scheme is scheme, and that its query has only the parameters
// in known, each at most once. Errors wrap registry.ErrInvalidURL and
// list the known parameters.
func ValidateURL(u *url.URL, scheme string, known ...string) error {
	if err := urlcheck.Check(u, registry.ErrInvalidURL); err != nil {
		return err
	}
	if u.Scheme != scheme {
		return fmt.Errorf("%w: %s: scheme %q, want %q", registry.ErrInvalidURL, scheme, u.Scheme, scheme)
	}
	q := u.Query()
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if !slices.Contains(known, k) {
			list := "none"
			if len(known) > 0 {
				list = strings.Join(known, ", ")
			}
			return fmt.Errorf("%w: %s: unknown parameter %q; known parameters: %s", registry.ErrInvalidURL, scheme, k, list)
		}
		if len(q[k]) > 1 {
			return fmt.Errorf("%w: %s: parameter %q given %d times", registry.ErrInvalidURL, scheme, k, len(q[k]))
		}
	}
	return nil
}

// EqualSets reports whether a and b, both sorted by ID, hold equal
// instances (registry.Instance.Equal).
func EqualSets(a, b []registry.Instance) bool {
	return slices.EqualFunc(a, b, registry.Instance.Equal)
}
