package zookeeper

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

// urlParams are the query parameters a zk URL accepts.
var urlParams = []string{"root", "session", "timeout"}

func init() {
	driver.RegisterScheme(Scheme, &URLOpener{})
}

// URLOpener opens zk:// URLs. Its fields configure every Registry it
// opens, on top of the URL's parameters and the environment; the zero
// value, which registry.DefaultURLMux holds, configures nothing more.
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
// "zk://10.0.0.1:2181,10.0.0.2:2181?root=/microservices". Options
// override the URL's parameters.
func Open(rawURL string, opts ...Option) (*Registry, error) {
	u, err := driver.ParseURL(Scheme, rawURL)
	if err != nil {
		return nil, err
	}
	return OpenURL(u, opts...)
}

// OpenURL is Open for a parsed URL.
func OpenURL(u *url.URL, opts ...Option) (*Registry, error) {
	servers, o, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	for _, opt := range opts {
		opt(&o)
	}
	return newFromOptions(servers, o)
}

// parseURL checks a zk registry URL and returns its servers (nil for an
// empty host) and the options its parameters set.
func parseURL(u *url.URL) ([]string, options, error) {
	o := defaultOptions()
	q, err := driver.ReadURL(u, Scheme, urlParams...)
	if err != nil {
		return nil, o, err
	}
	var servers []string
	if u.Host != "" {
		for s := range strings.SplitSeq(u.Host, ",") {
			if err := urlcheck.HostPort(s); err != nil {
				return nil, o, fmt.Errorf("%w: %s: host %q: %v", registry.ErrInvalidURL, driver.Redact(u), s, err)
			}
			servers = append(servers, s)
		}
	}
	if root := q.String("root", "an absolute path such as /wayfinder"); root != "" {
		if err := checkRoot(root); err != nil {
			q.Fail("root", "an absolute path such as /wayfinder, without a trailing slash")
		}
		o.root = root
	}
	if d := q.Duration("timeout"); d > 0 {
		o.timeout = d
	}
	if d := q.Duration("session"); d > 0 {
		o.session = d
	}
	if err := q.Err(); err != nil {
		return nil, o, err
	}
	if err := o.validate(); err != nil {
		return nil, o, fmt.Errorf("%w: %s: %w", registry.ErrInvalidURL, driver.Redact(u), err)
	}
	return servers, o, nil
}
