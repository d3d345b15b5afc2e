package etcd

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
)

// Option configures New, NewFromClient and OpenURL. Options override both
// URL parameters and environment variables.
type Option func(*options)

type options struct {
	prefix      string
	ttl         time.Duration
	timeout     time.Duration
	logger      *slog.Logger
	tls         *tls.Config
	tlsSet      bool
	useTLS      bool // from the URL: TLS with the system roots unless tls is set
	user, pass  string
	authSet     bool
	dialOptions []grpc.DialOption
	meter       metric.MeterProvider
	format      Format
	liveness    time.Duration // WithUnavailableAfter
}

func defaultOptions() options {
	return options{
		prefix:   DefaultPrefix,
		ttl:      DefaultTTL,
		timeout:  DefaultTimeout,
		logger:   slog.New(slog.DiscardHandler),
		liveness: DefaultUnavailableAfter,
	}
}

// WithPrefix sets the key prefix. Instances live at <prefix>/<service>/<id>.
// The prefix may be relative, as etcd naming targets are: the entries
// etcd's endpoints.Manager writes for target "foo/bar/hello" are service
// "hello" under prefix "foo/bar", and those of target "hello" are under
// prefix "" (keys "hello/<id>"). Prefix "/" holds keys "/<service>/<id>".
func WithPrefix(prefix string) Option { return func(o *options) { o.prefix = prefix } }

// WithTTL sets the lease TTL: how long an instance outlives its process
// when the process dies without deregistering. It is rounded up to whole
// seconds; etcd may raise it to its minimum (about 1.5 election timeouts).
func WithTTL(ttl time.Duration) Option { return func(o *options) { o.ttl = ttl } }

// WithTimeout bounds each request the background loops make, and every
// call (Register, Deregister, Lookup, Services, a watch's listing) whose
// context has no deadline (DefaultTimeout). A call whose endpoints all
// refuse, or answer as something other than etcd, returns at once. See
// "Failures" in the package doc.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithUnavailableAfter bounds how long a watch may go without hearing
// from etcd (DefaultUnavailableAfter): past d without an event, a watch
// confirmation or an answer to a progress request, Next returns an error
// wrapping registry.ErrUnavailable, whatever the state of the gRPC
// connection, and the watch lists and watches again until etcd answers,
// then re-sends the set. An idle watch asks etcd for progress after d/2
// of silence; watches of one Registry share one stream, so one answer
// serves them all. d must be at least 100ms.
func WithUnavailableAfter(d time.Duration) Option { return func(o *options) { o.liveness = d } }

// WithLogger sets the logger for background events: lease loss,
// re-registration, undecodable values. The default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithTLS makes the client use TLS with cfg, overriding ETCDCTL_CACERT,
// ETCDCTL_CERT and ETCDCTL_KEY. A nil cfg forces plain text.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tls, o.tlsSet = cfg, true }
}

// WithAuth sets the user name and password, overriding ETCDCTL_USER and
// ETCDCTL_PASSWORD. An empty user disables authentication.
func WithAuth(user, password string) Option {
	return func(o *options) { o.user, o.pass, o.authSet = user, password, true }
}

// WithDialOptions adds gRPC dial options to the client, such as
// interceptors for metrics.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOptions = append(o.dialOptions, opts...) }
}

func (o *options) validate() error {
	p := o.prefix
	if p != "/" && (strings.HasSuffix(p, "/") || strings.Contains(p, "//")) {
		return fmt.Errorf("etcd: prefix %q: want a key path without a trailing slash or empty segments, such as %q", p, DefaultPrefix)
	}
	if strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("etcd: prefix %q contains control characters", p)
	}
	if o.format != FormatNaming && o.format != FormatV1 {
		return fmt.Errorf("etcd: unknown value %v", o.format)
	}
	if o.ttl < time.Second || o.ttl > 24*time.Hour {
		return fmt.Errorf("etcd: TTL %v out of range 1s..24h", o.ttl)
	}
	if o.timeout <= 0 {
		return fmt.Errorf("etcd: timeout %v must be positive", o.timeout)
	}
	if o.liveness < 100*time.Millisecond {
		return fmt.Errorf("etcd: unavailable-after bound %v is below 100ms", o.liveness)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

type envConfig struct {
	endpoints  []string
	tls        *tls.Config
	user, pass string
}

// fromEnv reads etcdctl's variables. ETCDCTL_USER may be "user" or
// "user:password", as etcdctl's --user flag.
func fromEnv() (envConfig, error) {
	var e envConfig
	if v := strings.TrimSpace(os.Getenv(EnvEndpoints)); v != "" {
		for ep := range strings.SplitSeq(v, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				e.endpoints = append(e.endpoints, ep)
			}
		}
	}
	if u := os.Getenv(EnvUser); u != "" {
		e.user = u
		if name, pw, ok := strings.Cut(u, ":"); ok {
			e.user, e.pass = name, pw
		}
		if pw := os.Getenv(EnvPassword); pw != "" {
			e.pass = pw
		}
	}
	ca, cert, key := os.Getenv(EnvCACert), os.Getenv(EnvCert), os.Getenv(EnvKey)
	if ca == "" && cert == "" && key == "" {
		return e, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return e, fmt.Errorf("etcd: %s: %w", EnvCACert, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return e, fmt.Errorf("etcd: %s=%s holds no PEM certificate", EnvCACert, ca)
		}
		cfg.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return e, fmt.Errorf("etcd: set both %s and %s, or neither", EnvCert, EnvKey)
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return e, fmt.Errorf("etcd: %s/%s: %w", EnvCert, EnvKey, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	e.tls = cfg
	return e, nil
}
