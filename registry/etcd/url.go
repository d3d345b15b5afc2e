package etcd

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/metric"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	"github.com/wayfinder-rpc/wayfinder/registry/internal/urlcheck"
)

// urlParams are the query parameters an etcd URL accepts.
var urlParams = []string{"format", "prefix", "timeout", "tls", "ttl"}

func init() {
	driver.RegisterScheme(Scheme, &URLOpener{})
}

// URLOpener opens etcd:// URLs. Its fields configure every Registry it
// opens, on top of the URL's parameters and the environment; the zero
// value, which registry.DefaultURLMux holds, configures nothing more. A
// program that wants its logger in Registries opened by URL registers its
// own URLOpener into a registry.URLMux.
type URLOpener struct {
	// Logger receives the Registries' logs (WithLogger).
	Logger *slog.Logger
	// MeterProvider records their metrics (WithMeterProvider).
	MeterProvider metric.MeterProvider
	// Options are applied last.
	Options []Option
}

var _ driver.LoggerOpener = (*URLOpener)(nil)

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
	_, _, err := parseURL(u)
	return err
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

// Open opens a Registry from a URL such as
// "etcd://10.0.0.1:2379,10.0.0.2:2379?prefix=/svc". Options override the
// URL's parameters.
func Open(rawURL string, opts ...Option) (*Registry, error) {
	u, err := driver.ParseURL(Scheme, rawURL)
	if err != nil {
		return nil, err
	}
	return OpenURL(u, opts...)
}

// OpenURL is Open for a parsed URL.
func OpenURL(u *url.URL, opts ...Option) (*Registry, error) {
	endpoints, o, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	for _, opt := range opts {
		opt(&o)
	}
	return newFromOptions(endpoints, o)
}

// parseURL checks an etcd registry URL and returns its endpoints (nil for
// an empty host) and the options its parameters set, reading the query
// by registry/driver's rules.
func parseURL(u *url.URL) ([]string, options, error) {
	o := defaultOptions()
	q, err := driver.ReadURL(u, Scheme, urlParams...)
	if err != nil {
		return nil, o, err
	}
	endpoints, err := hostEndpoints(u)
	if err != nil {
		return nil, o, err
	}
	if p, ok := q.StringOrEmpty("prefix", "a key prefix such as /wayfinder, or empty for relative naming keys"); ok {
		o.prefix = p
	}
	switch f := q.String("format", "naming or v1"); f {
	case "":
	case FormatNaming.String():
		o.format = FormatNaming
	case FormatV1.String():
		o.format = FormatV1
	default:
		q.Fail("format", "naming or v1")
	}
	if d := q.Duration("ttl"); d > 0 {
		o.ttl = d
	}
	if d := q.Duration("timeout"); d > 0 {
		o.timeout = d
	}
	if q.Has("tls") {
		o.useTLS = q.Bool("tls")
	}
	if err := q.Err(); err != nil {
		return nil, o, err
	}
	if err := o.validate(); err != nil {
		return nil, o, fmt.Errorf("%w: %s: %w", registry.ErrInvalidURL, driver.Redact(u), err)
	}
	return endpoints, o, nil
}

// hostEndpoints returns the URL's comma-separated host:port endpoints.
func hostEndpoints(u *url.URL) ([]string, error) {
	if u.Host == "" {
		return nil, nil
	}
	var endpoints []string
	for ep := range strings.SplitSeq(u.Host, ",") {
		if err := urlcheck.HostPort(ep); err != nil {
			return nil, fmt.Errorf("%w: %s: host %q: %v", registry.ErrInvalidURL, driver.Redact(u), ep, err)
		}
		endpoints = append(endpoints, ep)
	}
	return endpoints, nil
}

// checkEndpoint accepts host:port, http://host:port and https://host:port.
func checkEndpoint(ep string) error {
	hp := ep
	if i := strings.Index(ep, "://"); i >= 0 {
		switch ep[:i] {
		case "http", "https":
			hp = strings.TrimSuffix(ep[i+3:], "/")
		default:
			return fmt.Errorf("etcd: endpoint %q: want host:port, http://host:port or https://host:port", ep)
		}
	}
	if err := urlcheck.HostPort(hp); err != nil {
		return fmt.Errorf("etcd: endpoint %q: %v", ep, err)
	}
	return nil
}

func anyHTTPS(endpoints []string) bool {
	for _, ep := range endpoints {
		if strings.HasPrefix(ep, "https://") {
			return true
		}
	}
	return false
}
