package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"

	"github.com/wayfinder-rpc/wayfinder/internal/backoff"
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
	// The dialer watches every connection, so that calls can fail at once
	// when every endpoint refuses or is not etcd (reach.go).
	rc := newReach(endpoints)
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
			grpc.WithContextDialer(rc.dial),
			// gRPC's default reconnect backoff grows to 2 min; a registry
			// client should find a recovered cluster within seconds.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
				MinConnectTimeout: 5 * time.Second,
			}),
		}, o.dialOptions...),
	}
	r := newRegistry(o, true)
	r.name, r.reach = clusterName(endpoints), rc
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
	r.name = clusterName(cli.Endpoints())
	r.setClient(cli)
	return r, nil
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
	name              string // "etcd://" and the endpoints, for errors
	reach             *reach // the dialer's view; nil over NewFromClient's client
	log               *slog.Logger

	ctx    context.Context // cancelled by Close; parent of every goroutine
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the Registry starts
	closed sync.Once

	watchers driver.Watchers // closed by Close
	problems *driver.FieldReporter

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
		problems:  driver.NewFieldReporter("etcd", o.logger),
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
