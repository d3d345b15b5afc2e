package driver

import (
	"log/slog"
	"net/url"
	"slices"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// RegisterScheme makes o the opener of scheme in registry.DefaultURLMux;
// backends call it from init. It panics on a scheme registered twice.
func RegisterScheme(scheme string, o registry.Opener) {
	registry.DefaultURLMux().RegisterScheme(scheme, o)
}

// LoggerOpener is an optional interface of a registry.Opener: a copy of
// the opener whose registries log to l. The backends' URLOpener structs
// implement it, so that registry.URLMux.OpenWithLogger (which app uses)
// can give a program's logger to a backend it opens by URL without
// knowing which.
type LoggerOpener interface {
	registry.Opener
	WithLogger(l *slog.Logger) registry.Opener
}

// MuxOpener is an optional interface of a registry.Opener whose
// registries are composed of others named by URL (registry/multi's
// multi://): a copy of the opener that opens those URLs through m.
// registry.URLMux calls it with itself before every OpenRegistryURL and
// ValidateURL, and after WithLogger, so that the members of a composed
// registry are opened by the same mux, with the same backends and the
// same logger, as the URL that names them.
type MuxOpener interface {
	registry.Opener
	WithMux(m *registry.URLMux) registry.Opener
}

// ValidateURL checks a registry URL for a backend that reads no
// parameter's value itself (the memory backend): ReadURL, then the
// query's Err. A backend with parameters calls ReadURL and reads them.
func ValidateURL(u *url.URL, scheme string, known ...string) error {
	q, err := ReadURL(u, scheme, known...)
	if err != nil {
		return err
	}
	for _, k := range known {
		q.String(k, "a value")
	}
	return q.Err()
}

// EqualSets reports whether a and b, both sorted by ID, hold equal
// instances (registry.Instance.Equal).
func EqualSets(a, b []registry.Instance) bool {
	return slices.EqualFunc(a, b, registry.Instance.Equal)
}
