package resolver

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	gresolver "google.golang.org/grpc/resolver"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// DefaultScheme is the scheme of builders made by NewBuilder.
const DefaultScheme = "wayfinder"

// Builder builds gRPC resolvers that follow a service through a registry
// watch. It is either bound to an injected registry.Discovery (NewBuilder,
// targets "wayfinder:///service") or opens registries from URL targets
// (URLBuilder, targets such as "consul://127.0.0.1:8500/service").
type Builder struct {
	scheme string
	disc   registry.Discovery // nil for URL builders
	cache  *Cache

	subsetSize int // see WithConnectionSubset
	subsetKey  string
}

var _ gresolver.Builder = (*Builder)(nil)

// Option configures a Builder.
type Option func(*Builder)

// WithScheme sets the scheme of a NewBuilder builder (default "wayfinder").
func WithScheme(s string) Option { return func(b *Builder) { b.scheme = s } }

// WithCache makes the builder share watches through c instead of the
// process-wide DefaultCache.
func WithCache(c *Cache) Option { return func(b *Builder) { b.cache = c } }

func newBuilder(opts []Option) *Builder {
	b := &Builder{scheme: DefaultScheme, cache: defaultCache}
	for _, o := range opts {
		o(b)
	}
	return b
}

// NewBuilder returns a builder over d. Pass it to grpc.NewClient with
// grpc.WithResolvers and dial "wayfinder:///<service>".
func NewBuilder(d registry.Discovery, opts ...Option) *Builder {
	b := newBuilder(opts)
	b.disc = d
	return b
}

// URLBuilder returns a builder for targets of a registry scheme, such as
// "mem", "consul" or "etcd": the target's path names the service, the
// rest names the registry, which is opened once per distinct URL and
// shared. WithScheme is ignored.
func URLBuilder(scheme string, opts ...Option) *Builder {
	b := newBuilder(opts)
	b.scheme = scheme
	return b
}

// Scheme implements resolver.Builder.
func (b *Builder) Scheme() string { return b.scheme }

// Build implements resolver.Builder. It never blocks on the network: the
// upstream watch runs in the cache, and Build only subscribes to it.
func (b *Builder) Build(target gresolver.Target, cc gresolver.ClientConn, _ gresolver.BuildOptions) (gresolver.Resolver, error) {
	r := &ccResolver{cc: cc, logger: b.cache.logger}
	sub := subscription{subsetSize: b.subsetSize, subsetKey: b.subsetKey}
	var err error
	if b.disc != nil {
		r.service, err = injectedService(target)
		if err != nil {
			return nil, err
		}
		r.source = discoveryName(b.disc)
		key := watchKey{source: sourceKey(b.disc, b), service: r.service}
		r.feed = driver.NewWatcher("wayfinder resolver", r.service, nil, driver.SharedSets())
		sub.feed = r.feed
		r.watch, err = b.cache.acquire(key, sub, func() (registry.Discovery, func(), error) { return b.disc, nil, nil })
	} else {
		var t registry.Target
		t, err = registry.TargetFromURL(&target.URL)
		if err != nil {
			return nil, err
		}
		r.service, r.source = t.Service, registryName(t.Registry)
		key := watchKey{source: t.Registry.String(), service: t.Service}
		r.feed = driver.NewWatcher("wayfinder resolver", r.service, nil, driver.SharedSets())
		sub.feed = r.feed
		r.watch, err = b.cache.acquire(key, sub, func() (registry.Discovery, func(), error) { return b.cache.openURL(t.Registry) })
	}
	if err != nil {
		return nil, fmt.Errorf("wayfinder resolver: %s: %w", driver.Redact(&target.URL), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Go(func() { r.loop(ctx) })
	return r, nil
}

// injectedService reads the service from "scheme:///service".
func injectedService(target gresolver.Target) (string, error) {
	u := target.URL
	if u.Host != "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("wayfinder resolver: target %q: %w: want %s:///<service>, with no host or parameters", driver.Redact(&u), registry.ErrInvalidURL, u.Scheme)
	}
	svc := strings.TrimPrefix(u.Path, "/")
	if err := registry.ValidateService(svc); err != nil {
		return "", fmt.Errorf("wayfinder resolver: target %q: %w", driver.Redact(&u), err)
	}
	return svc, nil
}

// ccResolver feeds one ClientConn from a shared watch, through its own
// driver.Watcher: the watch never waits for a slow ClientConn, which just
// skips intermediate sets, and the watcher keeps the contract (an
// unchanged set is no update; one error per outage, after which the set
// is sent again so that gRPC sees the recovery).
type ccResolver struct {
	cc      gresolver.ClientConn
	service string
	source  string // names the registry in RPC errors (see rpcError)
	watch   *watch
	feed    *driver.Watcher
	logger  *slog.Logger
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	attrs   []metric.RecordOption // see watchAttrs

	closeOnce sync.Once
}

func (r *ccResolver) loop(ctx context.Context) {
	var pushed []registry.Instance
	for {
		insts, err := r.feed.Next(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// Report, and keep whatever gRPC has: an error never becomes
			// an empty address list. The error carries no gRPC status, so
			// RPCs fail UNAVAILABLE naming service and registry, and
			// wait-for-ready RPCs wait (see rpcError).
			r.cc.ReportError(outageError(r.service, r.source, err))
			continue
		}
		prev := pushed
		pushed = insts
		r.push(insts, keptFromNote(insts, r.feed.Index()))
		if len(insts) == 0 {
			// The policy now has no endpoints and fails RPCs with a text
			// of its own ("no children to pick from"); the error gives
			// them ours, still UNAVAILABLE, so wait-for-ready RPCs wait
			// for an instance.
			r.cc.ReportError(noInstancesError(r.service, r.source))
		}
		if prev != nil {
			// After the push returns, the balancer has the set and has
			// built its picker: the change has propagated.
			c := r.watch.cache
			c.metrics.propagated(prev, insts, c.now(), r.watchAttrs())
		}
	}
}

// watchAttrs returns the metric attributes of r's watch, made once: a
// slice made once, too, so that recording allocates nothing. Only the
// loop goroutine calls it.
func (r *ccResolver) watchAttrs() []metric.RecordOption {
	if r.attrs == nil {
		r.attrs = []metric.RecordOption{r.watch.attrs}
	}
	return r.attrs
}

// push hands insts to gRPC; kept names those the guard keeps.
func (r *ccResolver) push(insts []registry.Instance, kept []string) {
	if err := r.cc.UpdateState(grpcState(insts, kept)); err != nil {
		// ErrBadResolverState: the policy rejected the state, usually
		// because the service has no instances; gRPC fails RPCs with
		// UNAVAILABLE until the set changes.
		r.logger.Debug("wayfinder resolver: state rejected", "service", r.service, "instances", len(insts), "err", err)
	}
}

// ResolveNow implements resolver.Resolver. Updates are pushed by the
// watch as they happen, so there is nothing to poll: it does nothing and
// never blocks.
func (r *ccResolver) ResolveNow(gresolver.ResolveNowOptions) {}

// Close implements resolver.Resolver. It stops the goroutine and releases
// the shared watch.
func (r *ccResolver) Close() {
	r.closeOnce.Do(func() {
		r.cancel()
		r.wg.Wait()
		r.watch.unsubscribe(r.feed)
		r.feed.Close()
	})
}

// NewClient is grpc.NewClient for a registry target such as
// "mem:///hello" or "consul://127.0.0.1:8500/hello?tag=v2", using the
// DefaultCache. It checks the target first and always passes the
// resolver with grpc.WithResolvers: grpc.NewClient alone would silently
// resolve an unregistered scheme through DNS.
func NewClient(target string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return defaultCache.NewClient(target, opts...)
}

// NewClient is the package-level NewClient with watches shared through c.
func (c *Cache) NewClient(target string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	t, err := registry.ParseTarget(target)
	if err != nil {
		return nil, fmt.Errorf("wayfinder: %w", err)
	}
	if err := c.mux.ValidateURL(t.Registry.String()); err != nil {
		return nil, fmt.Errorf("wayfinder: target %q: %w", driver.Redact(t.Registry), err)
	}
	return grpc.NewClient(target, append(c.urlBuilder(t.Registry.Scheme).DialOptions(), opts...)...)
}

func (c *Cache) urlBuilder(scheme string) *Builder {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.urlB[scheme]
	if !ok {
		b = URLBuilder(scheme, WithCache(c))
		c.urlB[scheme] = b
	}
	return b
}
