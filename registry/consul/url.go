package consul

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/wayfinder-rpc/wayfinder/internal/urlcheck"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// Scheme is the URL scheme of the Consul backend.
const Scheme = "consul"

func init() {
	driver.RegisterScheme(Scheme, &URLOpener{})
}

// URLOpener opens consul:// URLs. Its fields configure every Registry it
// opens, on top of the URL's parameters; the zero value, which
// registry.DefaultURLMux holds, configures nothing more. A program that
// wants its logger in Registries opened by URL (by resolver targets, for
// example) registers its own URLOpener into a registry.URLMux.
type URLOpener struct {
	// Logger receives the Registries' logs (WithLogger).
	Logger *slog.Logger
	// MeterProvider records their metrics (WithMeterProvider).
	MeterProvider metric.MeterProvider
	// Options are applied last, after the URL's parameters.
	Options []Option
}

// OpenRegistryURL implements registry.Opener.
func (o *URLOpener) OpenRegistryURL(_ context.Context, u *url.URL) (registry.Registry, error) {
	r, err := OpenURL(u, o.options()...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// ValidateURL implements registry.Opener.
func (o *URLOpener) ValidateURL(u *url.URL) error {
	_, opts, err := parseURL(u)
	if err != nil {
		return err
	}
	c := defaults()
	for _, opt := range append(opts, o.options()...) {
		opt(&c)
	}
	if err := c.validate(); err != nil {
		return fmt.Errorf("%w: %w", registry.ErrInvalidURL, err)
	}
	return nil
}

// WithLogger implements driver.LoggerOpener: a copy of o with Logger l.
func (o *URLOpener) WithLogger(l *slog.Logger) registry.Opener {
	c := *o
	c.Logger = l
	return &c
}

func (o *URLOpener) options() []Option {
	var opts []Option
	if o.Logger != nil {
		opts = append(opts, WithLogger(o.Logger))
	}
	if o.MeterProvider != nil {
		opts = append(opts, WithMeterProvider(o.MeterProvider))
	}
	return append(opts, o.Options...)
}

// Open opens a Registry for a consul:// URL, such as
// "consul://127.0.0.1:8500?dc=dc1,dc2"; opts apply after the URL's
// parameters. It does not touch the network.
func Open(rawURL string, opts ...Option) (*Registry, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: consul: %v", registry.ErrInvalidURL, err)
	}
	return OpenURL(u, opts...)
}

// OpenURL is Open for a parsed URL.
func OpenURL(u *url.URL, opts ...Option) (*Registry, error) {
	addr, uopts, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	r, err := New(addr, append(uopts, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", registry.ErrInvalidURL, err)
	}
	return r, nil
}

// knownParams are the accepted query parameters, in the order errors list
// them.
var knownParams = []string{"dc", "tag", "warning", "stale", "consistent", "cached", "near", "wait", "tls", "check", "ttl", "interval"}

// parseURL turns consul://host:port?params into an address and options.
// Secrets are never read from the URL.
func parseURL(u *url.URL) (string, []Option, error) {
	if err := driver.ValidateURL(u, Scheme, knownParams...); err != nil {
		return "", nil, err
	}
	q := u.Query()
	bad := func(k, why string) error {
		return fmt.Errorf("%w: consul: parameter %s=%q: %s", registry.ErrInvalidURL, k, q.Get(k), why)
	}
	boolParam := func(k string) (bool, error) {
		if !q.Has(k) {
			return false, nil
		}
		if q.Get(k) == "" {
			return true, nil // "?stale" alone means true, as in Consul's API
		}
		b, err := strconv.ParseBool(q.Get(k))
		if err != nil {
			return false, bad(k, "want true or false")
		}
		return b, nil
	}
	durParam := func(k string) (time.Duration, error) {
		d, err := time.ParseDuration(q.Get(k))
		if err != nil || d <= 0 {
			return 0, bad(k, "want a positive duration such as 30s")
		}
		return d, nil
	}
	list := func(k string) ([]string, error) {
		parts := strings.Split(q.Get(k), ",")
		for _, p := range parts {
			if p == "" {
				return nil, bad(k, "empty element in comma-separated list")
			}
		}
		return parts, nil
	}

	var opts []Option
	addr := u.Host
	if addr != "" {
		// One agent, as host:port: the api client would take "h" as
		// port 80 and ",,," as a host name, and fail only at the first
		// call.
		if err := urlcheck.HostPort(addr); err != nil {
			return "", nil, fmt.Errorf("%w: consul: host %q: %v; want the agent's host:port, such as 127.0.0.1:8500", registry.ErrInvalidURL, addr, err)
		}
	}
	if q.Has("dc") {
		dcs, err := list("dc")
		if err != nil {
			return "", nil, err
		}
		opts = append(opts, WithDatacenters(dcs...))
	}
	if q.Has("tag") {
		tags, err := list("tag")
		if err != nil {
			return "", nil, err
		}
		opts = append(opts, WithTags(tags...))
	}
	warning, err := boolParam("warning")
	if err != nil {
		return "", nil, err
	}
	if warning {
		opts = append(opts, WithWarning())
	}
	stale, err := boolParam("stale")
	if err != nil {
		return "", nil, err
	}
	consistent, err := boolParam("consistent")
	if err != nil {
		return "", nil, err
	}
	switch {
	case stale && consistent:
		return "", nil, fmt.Errorf("%w: consul: stale and consistent exclude each other", registry.ErrInvalidURL)
	case stale:
		opts = append(opts, WithConsistency(Stale))
	case consistent:
		opts = append(opts, WithConsistency(Consistent))
	}
	cached, err := boolParam("cached")
	if err != nil {
		return "", nil, err
	}
	if cached {
		opts = append(opts, WithAgentCache())
	}
	if q.Has("near") {
		if q.Get("near") == "" {
			return "", nil, bad("near", "want a node name or _agent")
		}
		opts = append(opts, WithNear(q.Get("near")))
	}
	if q.Has("wait") {
		d, err := durParam("wait")
		if err != nil {
			return "", nil, err
		}
		opts = append(opts, WithWait(d))
	}
	useTLS, err := boolParam("tls")
	if err != nil {
		return "", nil, err
	}
	if useTLS {
		opts = append(opts, withHTTPS())
	}
	if q.Has("check") {
		kinds, err := list("check")
		if err != nil {
			return "", nil, err
		}
		var ttl, grpc bool
		for _, k := range kinds {
			switch k {
			case "ttl":
				ttl = true
			case "grpc":
				grpc = true
			default:
				return "", nil, bad("check", "want ttl, grpc or ttl,grpc")
			}
		}
		if ttl {
			opts = append(opts, WithTTLCheck(DefaultTTL))
		}
		if ttl && !grpc {
			// The TTL check alone: not the server's default gRPC check.
			opts = append(opts, WithoutServerGRPCCheck())
		}
		if grpc {
			opts = append(opts, WithGRPCCheck(DefaultGRPCCheckInterval, 0))
		}
	}
	if q.Has("ttl") {
		d, err := durParam("ttl")
		if err != nil {
			return "", nil, err
		}
		opts = append(opts, WithTTLCheck(d))
	}
	if q.Has("interval") {
		d, err := durParam("interval")
		if err != nil {
			return "", nil, err
		}
		opts = append(opts, WithGRPCCheck(d, 0))
	}
	return addr, opts, nil
}

// withHTTPS forces https. Without WithTLS the system roots, or the
// files named by CONSUL_CACERT and friends, apply.
func withHTTPS() Option { return func(c *config) { c.https = true } }
