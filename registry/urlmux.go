package registry

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/wayfinder-rpc/wayfinder/registry/internal/urlcheck"
)

// Opener opens a Registry for a URL of one scheme. Backends register one
// per scheme with the driver package's RegisterScheme, into
// DefaultURLMux; a program that wants a backend configured otherwise
// (a logger, a meter provider, options) registers the backend's
// URLOpener struct into a URLMux of its own.
//
// OpenRegistryURL must not block on the network: an unreachable registry
// surfaces from the Registry's methods as ErrUnavailable, so that
// opening a client never delays an application's start. It must reject
// query parameters it does not know, naming those it accepts, and return
// a nil Registry with an error.
type Opener interface {
	OpenRegistryURL(ctx context.Context, u *url.URL) (Registry, error)
	// ValidateURL checks u as OpenRegistryURL would, without opening
	// anything, so that a gRPC target can be rejected when the client is
	// created rather than at its first RPC.
	ValidateURL(u *url.URL) error
}

// URLMux maps URL schemes to Openers, the way gocloud.dev's muxes do. The
// zero value is an empty mux, ready to use; DefaultURLMux holds the
// backends the program imports.
type URLMux struct {
	mu      sync.RWMutex
	openers map[string]Opener
}

var defaultMux = new(URLMux)

// DefaultURLMux returns the process-wide mux that Open, OpenURL and
// ValidateURL use, into which backend packages register their schemes
// when imported.
func DefaultURLMux() *URLMux { return defaultMux }

// RegisterScheme makes o the opener for scheme. It panics if scheme is
// empty, not lower case, or already registered, or o is nil: those are
// programming errors found at init time.
func (m *URLMux) RegisterScheme(scheme string, o Opener) {
	if scheme == "" || scheme != strings.ToLower(scheme) || o == nil {
		panic(fmt.Sprintf("registry: RegisterScheme(%q): scheme must be non-empty lower case and opener non-nil", scheme))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.openers[scheme]; dup {
		panic(fmt.Sprintf("registry: RegisterScheme(%q) called twice", scheme))
	}
	if m.openers == nil {
		m.openers = map[string]Opener{}
	}
	m.openers[scheme] = o
}

// Schemes returns the registered schemes, sorted.
func (m *URLMux) Schemes() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.openers))
	for s := range m.openers {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Opener returns the opener of scheme, or nil if none is registered.
func (m *URLMux) Opener(scheme string) Opener {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.openers[scheme]
}

// Open opens the registry named by rawURL, such as "mem://",
// "consul://127.0.0.1:8500?dc=dc1" or "etcd://127.0.0.1:2379". The URL
// names a registry, not a service: it has no path. Credentials never
// belong in the URL: a URL with user information is rejected, and
// backends take secrets from options and their ecosystem's environment
// variables.
func (m *URLMux) Open(ctx context.Context, rawURL string) (Registry, error) {
	u, err := parse(rawURL)
	if err != nil {
		return nil, err
	}
	return m.OpenURL(ctx, u)
}

// OpenURL is Open for a parsed URL. It does not modify u.
func (m *URLMux) OpenURL(ctx context.Context, u *url.URL) (Registry, error) {
	return m.openURL(ctx, u, nil)
}

// OpenWithLogger is Open, with l for the backend's logs: a backend whose
// Opener has the method WithLogger(*slog.Logger) Opener (every backend of
// this module; driver.LoggerOpener names that method for backend
// authors) opens with the copy WithLogger returns. Other backends, and a
// nil l, open as with Open. This is how a program that configures its
// logger once, such as the app package, hands it to whichever backend
// the URL names.
func (m *URLMux) OpenWithLogger(ctx context.Context, rawURL string, l *slog.Logger) (Registry, error) {
	u, err := parse(rawURL)
	if err != nil {
		return nil, err
	}
	return m.openURL(ctx, u, l)
}

// loggerOpener is driver.LoggerOpener, which this package cannot import.
type loggerOpener interface {
	Opener
	WithLogger(l *slog.Logger) Opener
}

// muxOpener is driver.MuxOpener, which this package cannot import.
type muxOpener interface {
	Opener
	WithMux(m *URLMux) Opener
}

// withMux returns the copy of o that opens other URLs through m, for an
// opener of a registry composed of others (registry/multi); other
// openers are returned as they are.
func (m *URLMux) withMux(o Opener) Opener {
	if mo, ok := o.(muxOpener); ok {
		return mo.WithMux(m)
	}
	return o
}

// openURL opens u, with l for the backend's logs if it is not nil.
func (m *URLMux) openURL(ctx context.Context, u *url.URL, l *slog.Logger) (Registry, error) {
	o, err := m.opener(u)
	if err != nil {
		return nil, err
	}
	if lo, ok := o.(loggerOpener); ok && l != nil {
		o = lo.WithLogger(l)
	}
	o = m.withMux(o)
	c := *u
	r, err := o.OpenRegistryURL(ctx, &c)
	if err != nil {
		return nil, err // a true nil, whatever the opener returned with it
	}
	return r, nil
}

// ValidateURL checks rawURL as Open would, without opening anything: the
// parts every registry URL shares, the scheme, and the backend's own
// parameters.
func (m *URLMux) ValidateURL(rawURL string) error {
	u, err := parse(rawURL)
	if err != nil {
		return err
	}
	o, err := m.opener(u)
	if err != nil {
		return err
	}
	c := *u
	return m.withMux(o).ValidateURL(&c)
}

func (m *URLMux) opener(u *url.URL) (Opener, error) {
	if err := checkURL(u); err != nil {
		return nil, err
	}
	m.mu.RLock()
	o, ok := m.openers[u.Scheme]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q; registered: %s (import a backend package, such as registry/consul, to add its scheme)",
			ErrUnknownScheme, u.Scheme, strings.Join(m.Schemes(), ", "))
	}
	return o, nil
}

// Open opens rawURL with DefaultURLMux.
func Open(ctx context.Context, rawURL string) (Registry, error) {
	return defaultMux.Open(ctx, rawURL)
}

// OpenURL opens u with DefaultURLMux. It does not modify u.
func OpenURL(ctx context.Context, u *url.URL) (Registry, error) {
	return defaultMux.OpenURL(ctx, u)
}

// ValidateURL checks rawURL with DefaultURLMux, without opening
// anything.
func ValidateURL(rawURL string) error { return defaultMux.ValidateURL(rawURL) }

// parse is url.Parse with an error that never quotes the URL.
func parse(rawURL string) (*url.URL, error) {
	u, err := urlcheck.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidURL, err)
	}
	return u, nil
}

func checkURL(u *url.URL) error { return urlcheck.Check(u, ErrInvalidURL) }
