package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"

	"github.com/wayfinder-rpc/wayfinder/internal/backoff"
	"github.com/wayfinder-rpc/wayfinder/internal/fieldreport"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// Scheme is the URL scheme of the etcd backend.
const Scheme = "etcd"

// Defaults.
const (
	DefaultPrefix   = "/wayfinder/services"
	DefaultTTL      = 10 * time.Second
	DefaultTimeout  = 5 * time.Second
	DefaultEndpoint = "127.0.0.1:2379"
	// DefaultUnavailableAfter is how long a watch may go without hearing
	// from etcd before Next reports ErrUnavailable (WithUnavailableAfter).
	DefaultUnavailableAfter = 10 * time.Second
)

// Environment variables read by New and by URLs without hosts. They are
// etcdctl's, so a shell set up for etcdctl works unchanged.
const (
	EnvEndpoints = "ETCDCTL_ENDPOINTS"
	EnvCACert    = "ETCDCTL_CACERT"
	EnvCert      = "ETCDCTL_CERT"
	EnvKey       = "ETCDCTL_KEY"
	EnvUser      = "ETCDCTL_USER"
	EnvPassword  = "ETCDCTL_PASSWORD"
)

// urlParams are the query parameters an etcd URL accepts.
var urlParams = []string{"prefix", "timeout", "tls", "ttl"}

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

var _ registry.Opener = (*URLOpener)(nil)

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

// WithTimeout bounds each request the background loops make, and calls
// whose context has no deadline.
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

// New returns a Registry that talks to the etcd cluster at endpoints
// (host:port or URLs). With no endpoints it uses ETCDCTL_ENDPOINTS, then
// DefaultEndpoint. TLS and credentials come from options, else from the
// ETCDCTL_* variables. New does not contact etcd: an unreachable cluster
// surfaces from the methods as registry.ErrUnavailable.
func New(endpoints []string, opts ...Option) (*Registry, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return newFromOptions(endpoints, o)
}

func newFromOptions(endpoints []string, o options) (*Registry, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	env, err := fromEnv()
	if err != nil {
		return nil, err
	}
	if len(endpoints) == 0 {
		endpoints = env.endpoints
	}
	if len(endpoints) == 0 {
		endpoints = []string{DefaultEndpoint}
	}
	for _, ep := range endpoints {
		if err := checkEndpoint(ep); err != nil {
			return nil, err
		}
	}
	tlsCfg := env.tls
	if o.tlsSet {
		tlsCfg = o.tls
	} else if tlsCfg == nil && (o.useTLS || anyHTTPS(endpoints)) {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	user, pass := env.user, env.pass
	if o.authSet {
		user, pass = o.user, o.pass
	}
	if user != "" && pass == "" {
		return nil, fmt.Errorf("etcd: user %q has no password; set %s or use WithAuth", user, EnvPassword)
	}
	cfg := clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: o.timeout,
		// Pings find a dead connection (a frozen member, a black-holed
		// network) within ~15 s. etcd rejects pings more often than every
		// 5 s (--grpc-keepalive-min-time).
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		TLS:                  tlsCfg,
		Username:             user,
		Password:             pass,
		Logger:               zap.NewNop(),
		DialOptions: append([]grpc.DialOption{
			// gRPC's default reconnect backoff grows to 2 min; a registry
			// client should find a recovered cluster within seconds.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
				MinConnectTimeout: 5 * time.Second,
			}),
		}, o.dialOptions...),
	}
	r := newRegistry(o, true)
	if user == "" {
		// Without credentials clientv3.New does no I/O.
		cli, err := clientv3.New(cfg)
		if err != nil {
			r.cancel()
			return nil, fmt.Errorf("etcd: %w", err)
		}
		r.setClient(cli)
		return r, nil
	}
	// With credentials clientv3.New authenticates, which is network I/O,
	// so the client is built in the background and the methods wait.
	cfg.Context = r.ctx
	r.wg.Go(func() { r.connectLoop(cfg, user) })
	return r, nil
}

// NewFromClient returns a Registry over an existing client. Close leaves
// the client open. WithTLS, WithAuth and WithDialOptions are errors here:
// configure the client instead.
func NewFromClient(cli *clientv3.Client, opts ...Option) (*Registry, error) {
	if cli == nil {
		return nil, errors.New("etcd: NewFromClient(nil)")
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.tlsSet || o.authSet || len(o.dialOptions) > 0 {
		return nil, errors.New("etcd: NewFromClient: TLS, auth and dial options belong to the client's own config")
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	r := newRegistry(o, false)
	r.setClient(cli)
	return r, nil
}

// Open opens a Registry from a URL such as
// "etcd://10.0.0.1:2379,10.0.0.2:2379?prefix=/svc". Options override the
// URL's parameters.
func Open(rawURL string, opts ...Option) (*Registry, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the raw URL may hold secrets; do not echo it
		}
		return nil, fmt.Errorf("%w: %v", registry.ErrInvalidURL, err)
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
// an empty host) and the options its parameters set.
func parseURL(u *url.URL) ([]string, options, error) {
	o := defaultOptions()
	if err := driver.ValidateURL(u, Scheme, urlParams...); err != nil {
		return nil, o, err
	}
	if u.RawQuery != "" && strings.Contains(u.RawQuery, ";") {
		return nil, o, fmt.Errorf("%w: etcd: ';' in query; separate parameters with '&'", registry.ErrInvalidURL)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, o, fmt.Errorf("%w: etcd: query: %v", registry.ErrInvalidURL, err)
	}
	var endpoints []string
	if u.Host != "" {
		for ep := range strings.SplitSeq(u.Host, ",") {
			if err := checkHostPort(ep); err != nil {
				return nil, o, fmt.Errorf("%w: etcd: host %q: %v", registry.ErrInvalidURL, ep, err)
			}
			endpoints = append(endpoints, ep)
		}
	}
	bad := func(k string, err error) error {
		return fmt.Errorf("%w: etcd: parameter %s=%q: %v", registry.ErrInvalidURL, k, q.Get(k), err)
	}
	if q.Has("prefix") {
		o.prefix = q.Get("prefix")
	}
	for _, k := range []string{"ttl", "timeout"} {
		if !q.Has(k) {
			continue
		}
		d, err := time.ParseDuration(q.Get(k))
		if err != nil {
			return nil, o, bad(k, err)
		}
		if k == "ttl" {
			o.ttl = d
		} else {
			o.timeout = d
		}
	}
	if q.Has("tls") {
		b, err := strconv.ParseBool(q.Get("tls"))
		if err != nil {
			return nil, o, bad("tls", err)
		}
		o.useTLS = b
	}
	if err := o.validate(); err != nil {
		return nil, o, fmt.Errorf("%w: %w", registry.ErrInvalidURL, err)
	}
	return endpoints, o, nil
}

func checkHostPort(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("empty host")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || strings.HasPrefix(port, "+") {
		return fmt.Errorf("port %q is not in 1..65535", port)
	}
	return nil
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
	if err := checkHostPort(hp); err != nil {
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

// Registry is an etcd client in both registry roles. It is safe for
// concurrent use.
//
// Lock order: Registry.mu before nothing else; a watcher's mu is never
// held while taking Registry.mu, nor the reverse. mu guards the client
// fields, the registration tables (entries, deletes), the keeper's
// published state (lease, lastErr) and the connection state.
type Registry struct {
	unregisterMetrics func()
	opts              options
	ownClient         bool
	log               *slog.Logger

	ctx    context.Context // cancelled by Close; parent of every goroutine
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the Registry starts
	closed sync.Once

	watchers driver.Watchers // closed by Close
	problems *fieldreport.Reporter

	mu       sync.Mutex
	cli      *clientv3.Client
	cliReady chan struct{} // closed when cli is set
	cliErr   error         // last error building the client
	cliErrCh chan struct{} // closed and replaced when cliErr changes
	entries  map[string]*entry
	deletes  map[string]*delOp
	keeperOn bool
	lease    clientv3.LeaseID
	lastErr  error
	stateCh  chan struct{} // closed and replaced on every state change
	connDown bool
	connCh   chan struct{} // closed and replaced when connDown changes
	kick     chan struct{} // 1-slot: wakes the keeper
	stats    stats

	// The liveness probe (watch.go): when it last had an answer, in
	// Unix nanoseconds, and whether one is running.
	lastHeard atomic.Int64
	probing   atomic.Bool
}

type stats struct {
	skipped, grants, keepAlives, relists, compacted, reputs atomic.Uint64
}

var (
	_ registry.Registry             = (*Registry)(nil)
	_ registry.StatusReporter       = (*Registry)(nil)
	_ registry.ServiceLister        = (*Registry)(nil)
	_ registry.FieldProblemReporter = (*Registry)(nil)
)

func newRegistry(o options, own bool) *Registry {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{
		opts:      o,
		ownClient: own,
		log:       o.logger,
		ctx:       ctx,
		cancel:    cancel,
		cliReady:  make(chan struct{}),
		cliErrCh:  make(chan struct{}),
		entries:   map[string]*entry{},
		deletes:   map[string]*delOp{},
		stateCh:   make(chan struct{}),
		connCh:    make(chan struct{}),
		kick:      make(chan struct{}, 1),
		problems:  fieldreport.New("etcd", o.logger),
	}
	r.unregisterMetrics = r.registerMetrics(o.meter)
	return r
}

func (r *Registry) setClient(cli *clientv3.Client) {
	r.mu.Lock()
	r.cli, r.cliErr = cli, nil
	close(r.cliReady)
	r.mu.Unlock()
	r.wg.Go(func() { r.monitorConn(cli) })
}

// connectLoop builds an authenticating client, retrying until it works or
// the Registry is closed.
func (r *Registry) connectLoop(cfg clientv3.Config, user string) {
	bo := newBackoff()
	for {
		cli, err := clientv3.New(cfg)
		if err == nil {
			if r.ctx.Err() != nil {
				cli.Close()
				return
			}
			r.setClient(cli)
			return
		}
		if r.ctx.Err() != nil {
			return
		}
		if errors.Is(err, rpctypes.ErrAuthFailed) {
			err = fmt.Errorf("authenticate as %q: %w", user, err)
		}
		r.log.Warn("etcd: cannot build client", "err", err)
		r.mu.Lock()
		r.cliErr = err
		close(r.cliErrCh)
		r.cliErrCh = make(chan struct{})
		r.mu.Unlock()
		if !backoff.Sleep(r.ctx, bo.Next()) {
			return
		}
	}
}

// client returns the etcd client, waiting while it is being built. If
// building it failed, it returns that error at once rather than waiting
// for the next attempt, so that a wrong password is reported promptly.
func (r *Registry) client(ctx context.Context) (*clientv3.Client, error) {
	r.mu.Lock()
	cli, ready, err, errCh := r.cli, r.cliReady, r.cliErr, r.cliErrCh
	r.mu.Unlock()
	if r.ctx.Err() != nil {
		return nil, fmt.Errorf("etcd: %w", registry.ErrClosed)
	}
	if cli != nil {
		return cli, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: etcd: %w", registry.ErrUnavailable, err)
	}
	select {
	case <-ready:
		return r.client(ctx)
	case <-errCh:
		return r.client(ctx)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-r.ctx.Done():
		return nil, fmt.Errorf("etcd: %w", registry.ErrClosed)
	}
}

// Client returns the underlying etcd client, or nil while an
// authenticating client is still being built.
func (r *Registry) Client() *clientv3.Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cli
}

// Prefix returns the key prefix: instances live at Prefix()/<service>/<id>.
func (r *Registry) Prefix() string { return r.opts.prefix }

// TTL returns the lease TTL used for registrations.
func (r *Registry) TTL() time.Duration { return time.Duration(r.ttlSeconds()) * time.Second }

func (r *Registry) ttlSeconds() int64 { return int64(math.Ceil(r.opts.ttl.Seconds())) }

func (r *Registry) servicePrefix(service string) string {
	return r.root() + service + "/"
}

// root is the prefix of every key: the prefix and a slash, except for
// the root prefixes "" and "/".
func (r *Registry) root() string {
	if p := r.opts.prefix; p == "" || p == "/" {
		return p
	}
	return r.opts.prefix + "/"
}

func (r *Registry) key(service, id string) string { return r.servicePrefix(service) + id }

// opCtx bounds one background request.
func (r *Registry) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.ctx, r.opts.timeout)
}

// callCtx adds the default timeout to a caller's context without a
// deadline, so that a call never hangs on an unreachable cluster.
func (r *Registry) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, r.opts.timeout)
}

func (r *Registry) isClosed() bool { return r.ctx.Err() != nil }

// Close stops the background loops and watchers and closes the client if
// the Registry built it. It does not deregister: registrations expire with
// the lease TTL unless Deregister withdrew them first. Close on a nil
// *Registry does nothing.
func (r *Registry) Close() error {
	if r == nil {
		return nil
	}
	var err error
	r.closed.Do(func() {
		r.watchers.CloseAll()
		r.unregisterMetrics()
		r.cancel()
		r.wg.Wait()
		r.mu.Lock()
		cli := r.cli
		r.mu.Unlock()
		if r.ownClient && cli != nil {
			if cerr := cli.Close(); cerr != nil && !errors.Is(cerr, context.Canceled) {
				err = fmt.Errorf("etcd: close: %w", cerr)
			}
		}
	})
	return err
}

// Stats counts background events since the Registry was created.
type Stats struct {
	SkippedValues uint64 // values under the prefix that did not decode, per reader
	LeaseGrants   uint64 // leases granted (1 + lease losses, while registered)
	KeepAlives    uint64 // keepalive responses received
	Relists       uint64 // full re-reads by watchers after compaction or errors
	Compacted     uint64 // watches that ended with ErrCompacted
	RePuts        uint64 // own keys written again after being deleted by others
	// FieldProblems counts optional fields that were dropped from kept
	// instances (see FieldProblems), once per instance, field and value.
	FieldProblems uint64
}

// Stats returns the counters.
func (r *Registry) Stats() Stats {
	return Stats{
		SkippedValues: r.stats.skipped.Load(),
		LeaseGrants:   r.stats.grants.Load(),
		KeepAlives:    r.stats.keepAlives.Load(),
		Relists:       r.stats.relists.Load(),
		Compacted:     r.stats.compacted.Load(),
		RePuts:        r.stats.reputs.Load(),
		FieldProblems: r.problems.Count(),
	}
}
