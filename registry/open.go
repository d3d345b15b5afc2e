package registry

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Opener opens a Registry for a URL of one scheme. Backends register one
// with RegisterScheme, usually from their package's init.
//
// OpenRegistry must not block on the network: an unreachable registry
// surfaces from the Registry's methods as ErrUnavailable, so that opening a
// client never delays an application's start. It must reject query
// parameters it does not know, naming those it accepts.
type Opener interface {
	OpenRegistry(ctx context.Context, u *url.URL) (Registry, error)
}

// URLValidator is an optional interface for an Opener: it checks a URL
// without opening anything, so a gRPC target can be rejected when the
// client is created rather than at its first RPC.
type URLValidator interface {
	ValidateURL(u *url.URL) error
}

// OpenerFunc adapts a function to Opener.
type OpenerFunc func(ctx context.Context, u *url.URL) (Registry, error)

// OpenRegistry calls f.
func (f OpenerFunc) OpenRegistry(ctx context.Context, u *url.URL) (Registry, error) {
	return f(ctx, u)
}

var (
	schemesMu sync.RWMutex
	schemes   = map[string]Opener{}
)

// RegisterScheme makes o the opener for scheme. It panics if scheme is
// empty, not lower case, or already registered: those are programming
// errors found at init time.
func RegisterScheme(scheme string, o Opener) {
	if scheme == "" || scheme != strings.ToLower(scheme) || o == nil {
		panic(fmt.Sprintf("registry: RegisterScheme(%q): scheme must be non-empty lower case and opener non-nil", scheme))
	}
	schemesMu.Lock()
	defer schemesMu.Unlock()
	if _, dup := schemes[scheme]; dup {
		panic(fmt.Sprintf("registry: RegisterScheme(%q) called twice", scheme))
	}
	schemes[scheme] = o
}

// Schemes returns the registered schemes, sorted.
func Schemes() []string {
	schemesMu.RLock()
	defer schemesMu.RUnlock()
	out := make([]string, 0, len(schemes))
	for s := range schemes {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func lookupScheme(scheme string) (Opener, error) {
	schemesMu.RLock()
	o, ok := schemes[scheme]
	schemesMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q; registered: %s (import a backend package, such as registry/consul, to add its scheme)",
			ErrUnknownScheme, scheme, strings.Join(Schemes(), ", "))
	}
	return o, nil
}

// Open opens the registry named by rawURL, such as "mem://",
// "consul://127.0.0.1:8500?dc=dc1" or "etcd://127.0.0.1:2379". The URL
// names a registry, not a service: it has no path. Credentials never
// belong in the URL: a URL with user information is rejected, and
// backends take secrets from options and their ecosystem's environment
// variables.
func Open(ctx context.Context, rawURL string) (Registry, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidURL, redact(err))
	}
	return OpenURL(ctx, u)
}

// OpenURL is Open for a parsed URL. It does not modify u.
func OpenURL(ctx context.Context, u *url.URL) (Registry, error) {
	o, err := opener(u)
	if err != nil {
		return nil, err
	}
	c := *u
	return o.OpenRegistry(ctx, &c)
}

// ValidateURL checks rawURL as Open would, without opening anything. The
// check of query parameters is done only for backends whose Opener
// implements URLValidator.
func ValidateURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidURL, redact(err))
	}
	return ValidateParsedURL(u)
}

// ValidateParsedURL is ValidateURL for a parsed URL.
func ValidateParsedURL(u *url.URL) error {
	o, err := opener(u)
	if err != nil {
		return err
	}
	if v, ok := o.(URLValidator); ok {
		c := *u
		return v.ValidateURL(&c)
	}
	return nil
}

func opener(u *url.URL) (Opener, error) {
	if err := CheckURL(u); err != nil {
		return nil, err
	}
	return lookupScheme(u.Scheme)
}

// CheckURL checks the parts of a registry URL that every backend shares:
// a scheme, no user information, no path and no fragment.
func CheckURL(u *url.URL) error {
	switch {
	case u.Scheme == "":
		return fmt.Errorf("%w: %q has no scheme; want scheme://host, such as mem:// or consul://127.0.0.1:8500", ErrInvalidURL, u.Redacted())
	case u.Opaque != "":
		return fmt.Errorf("%w: %q: want scheme://host, with two slashes", ErrInvalidURL, u.Redacted())
	case u.User != nil:
		return fmt.Errorf("%w: %q carries credentials; pass secrets through options or environment variables, never in a URL that may be logged", ErrInvalidURL, u.Redacted())
	case u.Path != "" && u.Path != "/":
		return fmt.Errorf("%w: %q has path %q; a registry URL names no service (targets do: scheme://host/service)", ErrInvalidURL, u.Redacted(), u.Path)
	case u.Fragment != "":
		return fmt.Errorf("%w: %q has a fragment", ErrInvalidURL, u.Redacted())
	}
	return nil
}

// redact drops the URL that url.Parse quotes in its errors, since it may
// carry credentials.
func redact(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// CheckParams returns an error wrapping ErrInvalidURL if q has a parameter
// not in known, or one given twice. The error lists the known parameters.
func CheckParams(scheme string, q url.Values, known ...string) error {
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if !slices.Contains(known, k) {
			list := "none"
			if len(known) > 0 {
				list = strings.Join(known, ", ")
			}
			return fmt.Errorf("%w: %s: unknown parameter %q; known parameters: %s", ErrInvalidURL, scheme, k, list)
		}
		if len(q[k]) > 1 {
			return fmt.Errorf("%w: %s: parameter %q given %d times", ErrInvalidURL, scheme, k, len(q[k]))
		}
	}
	return nil
}

type loggerKey struct{}

// ContextWithLogger returns a context under which Open and OpenURL give
// the backend l for its logs (registrations lost or failing, watches
// failing and recovering). Backends opened without one log nothing.
// Constructors such as consul.New take the logger as an option instead.
func ContextWithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// LoggerFromContext returns the logger set by ContextWithLogger, or nil;
// for Openers.
func LoggerFromContext(ctx context.Context) *slog.Logger {
	l, _ := ctx.Value(loggerKey{}).(*slog.Logger)
	return l
}
