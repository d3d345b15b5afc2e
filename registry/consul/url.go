package consul

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"

	"go.opentelemetry.io/otel/metric"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	"github.com/wayfinder-rpc/wayfinder/registry/internal/urlcheck"
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
		return fmt.Errorf("%w: %s: %w", registry.ErrInvalidURL, driver.Redact(u), err)
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
	u, err := driver.ParseURL(Scheme, rawURL)
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("%w: %s: %w", registry.ErrInvalidURL, driver.Redact(u), err)
	}
	return r, nil
}

// knownParams are the accepted query parameters, in the order errors list
// them.
var knownParams = []string{"dc", "tag", "warning", "stale", "consistent", "cached", "near", "wait", "timeout", "tls", "check", "ttl", "interval"}

// parseURL turns consul://host:port?params into an address and options,
// reading the query by registry/driver's rules. Secrets are never read
// from the URL.
func parseURL(u *url.URL) (string, []Option, error) {
	q, err := driver.ReadURL(u, Scheme, knownParams...)
	if err != nil {
		return "", nil, err
	}
	if err := checkHost(u); err != nil {
		return "", nil, err
	}
	opts := append(readOptions(q), checkOptions(q)...)
	if err := q.Err(); err != nil {
		return "", nil, err
	}
	return u.Host, opts, nil
}

// checkHost accepts an empty host (CONSUL_HTTP_ADDR, else the api's
// default) or one agent as host:port: the api client would take "h" as
// port 80 and ",,," as a host name, and fail only at the first call.
func checkHost(u *url.URL) error {
	if u.Host == "" {
		return nil
	}
	if err := urlcheck.HostPort(u.Host); err != nil {
		return fmt.Errorf("%w: %s: host %q: %v; want the agent's host:port, such as 127.0.0.1:8500", registry.ErrInvalidURL, driver.Redact(u), u.Host, err)
	}
	return nil
}

// readOptions reads the parameters of reads: which datacenters and tags,
// which health states, how consistent, near what, how long a blocking
// query waits, and https.
func readOptions(q *driver.Query) []Option {
	var opts []Option
	if dcs := q.List("dc", "datacenter"); dcs != nil {
		opts = append(opts, WithDatacenters(dcs...))
	}
	if tags := q.List("tag", "tag"); tags != nil {
		opts = append(opts, WithTagFilter(tags...))
	}
	if q.Bool("warning") {
		opts = append(opts, WithWarning())
	}
	if c, ok := consistency(q); ok {
		opts = append(opts, WithConsistency(c))
	}
	if q.Bool("cached") {
		opts = append(opts, WithAgentCache())
	}
	if near := q.String("near", "a node name or _agent"); near != "" {
		opts = append(opts, WithNear(near))
	}
	if d := q.Duration("wait"); d > 0 {
		opts = append(opts, WithWait(d))
	}
	if d := q.Duration("timeout"); d > 0 {
		opts = append(opts, WithTimeout(d))
	}
	if q.Bool("tls") {
		opts = append(opts, withHTTPS())
	}
	return opts
}

// consistency reads stale and consistent, which exclude each other.
func consistency(q *driver.Query) (Consistency, bool) {
	stale, consistent := q.Bool("stale"), q.Bool("consistent")
	switch {
	case stale && consistent:
		q.Errorf("stale and consistent exclude each other")
	case stale:
		return ConsistencyStale, true
	case consistent:
		return ConsistencyConsistent, true
	}
	return ConsistencyDefault, false
}

// checkOptions reads the parameters of registration: which health checks
// (check=ttl, grpc or ttl,grpc), the TTL and the gRPC check's interval.
func checkOptions(q *driver.Query) []Option {
	var opts []Option
	if kinds := q.List("check", "check kind (ttl or grpc)"); kinds != nil {
		var ttl, grpc bool
		for _, k := range kinds {
			switch k {
			case "ttl":
				ttl = true
			case "grpc":
				grpc = true
			default:
				q.Fail("check", "ttl, grpc or ttl,grpc")
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
	if d := q.Duration("ttl"); d > 0 {
		opts = append(opts, WithTTLCheck(d))
	}
	if d := q.Duration("interval"); d > 0 {
		opts = append(opts, WithGRPCCheck(d, 0))
	}
	return opts
}

// withHTTPS forces https. Without WithTLS the system roots, or the
// files named by CONSUL_CACERT and friends, apply.
func withHTTPS() Option { return func(c *config) { c.https = true } }
