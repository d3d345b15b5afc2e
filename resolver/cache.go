package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"reflect"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// DefaultLinger is how long a Cache keeps an unused watch running.
const DefaultLinger = 30 * time.Second

// Cache is a process-wide, reference-counted set of upstream watches: all
// resolvers of one service in one registry share a single
// registry.Watcher, however many ClientConns there are. A watch outlives
// its last resolver by the linger time, so a ClientConn that leaves
// gRPC's idle mode is answered at once from the cache instead of waiting
// for a registry round trip.
//
// Lock ordering: Cache.mu before watch.mu. Neither is held while calling
// a registry or gRPC.
type Cache struct {
	linger time.Duration
	logger *slog.Logger

	guardFrac float64 // see WithMassRemovalGuard
	guardMin  int
	guardHold time.Duration
	meter     metric.MeterProvider
	now       func() time.Time
	metrics   *cacheMetrics

	mu      sync.Mutex // guards the fields below
	closed  bool
	watches map[watchKey]*watch
	regs    map[string]*openRegistry
	urlB    map[string]*Builder
}

// CacheOption configures a Cache.
type CacheOption func(*Cache)

// WithLinger sets how long an unused watch keeps running; 0 stops it as
// soon as its last resolver closes.
func WithLinger(d time.Duration) CacheOption { return func(c *Cache) { c.linger = d } }

// WithCacheLogger sets the logger for upstream watch outages: the first
// error at Warn, the rest at Debug with a Warn reminder every minute, the
// recovery at Info. The default discards.
func WithCacheLogger(l *slog.Logger) CacheOption { return func(c *Cache) { c.logger = l } }

// WithMeterProvider records the cache's metrics (see metrics.go) with mp.
// The default is OpenTelemetry's global provider, a no-op until the
// program installs one.
func WithMeterProvider(mp metric.MeterProvider) CacheOption { return func(c *Cache) { c.meter = mp } }

// NewCache returns an empty cache. Close it to stop its watches.
func NewCache(opts ...CacheOption) *Cache {
	c := &Cache{
		linger: DefaultLinger,

		guardFrac: DefaultGuardFraction,
		guardMin:  DefaultGuardMin,
		guardHold: DefaultGuardHold,
		logger:    slog.New(slog.DiscardHandler),
		now:       time.Now,
		watches:   map[watchKey]*watch{},
		regs:      map[string]*openRegistry{},
		urlB:      map[string]*Builder{},
	}
	for _, o := range opts {
		o(c)
	}
	c.metrics = newCacheMetrics(c)
	return c
}

var defaultCache = NewCache()

// DefaultCache returns the process-wide cache used by NewClient and by
// builders made without WithCache.
func DefaultCache() *Cache { return defaultCache }

type watchKey struct {
	source  any // registry URL string, or the injected Discovery
	service string
}

// backend names the registry behind a key for metrics and the debug
// view: the URL's scheme, or the Discovery's type. It never includes
// hosts or instance IDs, so metric cardinality stays bounded.
func (k watchKey) backend() string {
	if s, ok := k.source.(string); ok {
		if u, err := url.Parse(s); err == nil {
			return u.Scheme
		}
		return "url"
	}
	return fmt.Sprintf("%T", k.source)
}

// sourceName describes the registry behind a key for the debug view.
func (k watchKey) sourceName() string {
	if s, ok := k.source.(string); ok {
		if u, err := url.Parse(s); err == nil {
			return u.Redacted()
		}
	}
	return fmt.Sprintf("%T", k.source)
}

// sourceKey returns a map key identifying d: d itself when its dynamic
// type is comparable (a pointer, usually), else fallback.
func sourceKey(d registry.Discovery, fallback any) any {
	if reflect.TypeOf(d).Comparable() {
		return d
	}
	return fallback
}

type openRegistry struct {
	reg  registry.Registry
	refs int
}

// state is what a watch knows of its service.
type state struct {
	instances []registry.Instance // the last good set; valid if ok
	ok        bool                // a set has been read
	err       error               // the error since the last good read, if any
	gen       uint64              // bumped on every change
}

type watch struct {
	cache   *Cache
	key     watchKey
	service string
	cancel  context.CancelFunc
	done    chan struct{}
	release func() // releases a registry opened for this watch; may be nil

	mu          sync.Mutex // guards the fields below
	refs        int
	st          state
	subs        map[chan struct{}]struct{}
	lingerTimer *time.Timer
	upstreams   int       // Watch calls made, for tests and the debug view
	updates     int64     // sets published
	errors      int64     // errors published
	lastChange  time.Time // when the published set last changed
	lastGood    time.Time // when the upstream last answered, changed or not
	started     time.Time

	upstream  []registry.Instance // the latest set read, before the guard
	index     string              // the registry's index of upstream (registry.IndexedWatcher); "" if unknown
	holdSince time.Time           // when a mass removal started being held; zero if none
	holdBase  []registry.Instance // the set clients had when the hold began
	holdTimer *time.Timer
	held      int64 // mass removals held
	stopped   bool
}

// ErrCacheClosed is returned when building a resolver on a closed Cache.
var ErrCacheClosed = errors.New("wayfinder resolver: cache closed")

// acquire returns the watch for key, starting it with the Discovery that
// open returns if it is not running. The caller must call
// watch.unsubscribe with the same channel.
func (c *Cache) acquire(key watchKey, notify chan struct{}, open func() (registry.Discovery, func(), error)) (*watch, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrCacheClosed
	}
	w, ok := c.watches[key]
	if !ok {
		d, release, err := open()
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		w = &watch{cache: c, key: key, service: key.service, cancel: cancel, done: make(chan struct{}),
			release: release, subs: map[chan struct{}]struct{}{}, started: c.now()}
		c.watches[key] = w
		go w.run(ctx, d)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.refs++
	if w.lingerTimer != nil {
		w.lingerTimer.Stop()
		w.lingerTimer = nil
	}
	w.subs[notify] = struct{}{}
	if w.st.gen > 0 {
		notify <- struct{}{} // answer at once from the cache
	}
	return w, nil
}

// openURL opens (or shares) the registry at u, for one more user.
// Callers hold c.mu.
func (c *Cache) openURL(u *url.URL) (registry.Discovery, func(), error) {
	key := u.String()
	r, ok := c.regs[key]
	if !ok {
		// OpenRegistry must not block on the network (registry.Opener).
		reg, err := registry.OpenURL(context.Background(), u)
		if err != nil {
			return nil, nil, err
		}
		r = &openRegistry{reg: reg}
		c.regs[key] = r
	}
	r.refs++
	release := func() {
		c.mu.Lock()
		r.refs--
		last := r.refs == 0
		if last {
			delete(c.regs, key)
		}
		c.mu.Unlock()
		if last {
			r.reg.Close()
		}
	}
	return r.reg, release, nil
}

func (w *watch) unsubscribe(notify chan struct{}) {
	c := w.cache
	c.mu.Lock()
	w.mu.Lock()
	delete(w.subs, notify)
	w.refs--
	idle := w.refs == 0
	if idle && c.linger > 0 {
		var t *time.Timer
		t = time.AfterFunc(c.linger, func() { w.expire(t) })
		w.lingerTimer = t
		idle = false
	}
	if idle {
		delete(c.watches, w.key)
	}
	w.mu.Unlock()
	c.mu.Unlock()
	if idle {
		w.stop()
	}
}

// expire stops the watch if timer t is still its linger timer.
func (w *watch) expire(t *time.Timer) {
	c := w.cache
	c.mu.Lock()
	w.mu.Lock()
	stale := w.lingerTimer != t || w.refs > 0
	if !stale {
		w.lingerTimer = nil
		if c.watches[w.key] == w {
			delete(c.watches, w.key)
		}
	}
	w.mu.Unlock()
	c.mu.Unlock()
	if !stale {
		w.stop()
	}
}

func (w *watch) stop() {
	w.cancel()
	<-w.done
	w.mu.Lock()
	w.stopped = true
	w.clearHoldLocked()
	w.mu.Unlock()
	if w.release != nil {
		w.release()
	}
}

// Close stops every watch and closes the registries the cache opened.
// Resolvers still open keep their last state but receive no more updates.
func (c *Cache) Close() error {
	c.metrics.unregister()
	c.mu.Lock()
	c.closed = true
	ws := make([]*watch, 0, len(c.watches))
	for _, w := range c.watches {
		w.mu.Lock()
		if w.lingerTimer != nil {
			w.lingerTimer.Stop()
			w.lingerTimer = nil
		}
		w.mu.Unlock()
		ws = append(ws, w)
	}
	c.watches = map[watchKey]*watch{}
	c.mu.Unlock()
	for _, w := range ws {
		w.stop()
	}
	return nil
}

// Stats describes a Cache, for tests, metrics and debug pages.
type Stats struct {
	Watches    int // upstream watches running
	Upstreams  int // registry.Discovery.Watch calls made by running watches
	Registries int // registries opened from URLs
}

// Stats returns current counts.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{Watches: len(c.watches), Registries: len(c.regs)}
	for _, w := range c.watches {
		w.mu.Lock()
		s.Upstreams += w.upstreams
		w.mu.Unlock()
	}
	return s
}

func (w *watch) snapshot() state {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st
}

// publish records a good read, made at the registry's index (empty if
// the watcher does not say), and wakes subscribers if anything changed.
func (w *watch) publish(insts []registry.Instance, index string) {
	now := w.cache.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastGood = now
	w.upstream = insts
	w.index = index
	w.setLocked(w.guardLocked(insts, now), now)
}

// setLocked publishes insts if they differ from what subscribers have.
// Callers hold w.mu.
func (w *watch) setLocked(insts []registry.Instance, now time.Time) {
	if w.st.ok && w.st.err == nil && registry.EqualSets(w.st.instances, insts) {
		return
	}
	w.st = state{instances: insts, ok: true, gen: w.st.gen + 1}
	w.updates++
	w.lastChange = now
	w.cache.metrics.update(w.key)
	w.notifyLocked()
}

// publishErr records an error. The last good set is kept.
func (w *watch) publishErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.st.err = err
	w.st.gen++
	w.errors++
	w.cache.metrics.error(w.key)
	w.notifyLocked()
}

func (w *watch) notifyLocked() {
	for ch := range w.subs {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending; the subscriber reads the latest state
		}
	}
}

// Backoff bounds for a failing upstream. The cap is low because a backend
// Watcher already retries on its own; this only stops a misbehaving one
// from spinning.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

func (w *watch) run(ctx context.Context, d registry.Discovery) {
	defer close(w.done)
	failures := 0
	ol := &outageLog{log: w.cache.logger, service: w.service}
	sleep := func() bool {
		failures++
		b := minBackoff << min(failures-1, 5)
		b = min(b, maxBackoff)
		b = b/2 + rand.N(b/2+1) // jitter
		t := time.NewTimer(b)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		w.mu.Lock()
		w.upstreams++
		w.mu.Unlock()
		wt, err := d.Watch(ctx, w.service)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			err = fmt.Errorf("watch %q: %w", w.service, err)
			ol.failed(w.cache.now(), err)
			w.publishErr(err)
			if !sleep() {
				return
			}
			continue
		}
		w.follow(ctx, wt, &failures, sleep, ol)
		wt.Close()
	}
}

// follow reads wt until ctx is done or wt is closed under it.
func (w *watch) follow(ctx context.Context, wt registry.Watcher, failures *int, sleep func() bool, ol *outageLog) {
	for {
		insts, err := wt.Next(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			ol.failed(w.cache.now(), err)
			w.publishErr(err) // backends name the service in their errors
			if !sleep() || errors.Is(err, registry.ErrClosed) {
				return // re-watch, unless ctx is done
			}
			continue
		}
		*failures = 0
		ol.ok(w.cache.now())
		index := ""
		if iw, ok := wt.(registry.IndexedWatcher); ok {
			index = iw.Index()
		}
		w.publish(insts, index)
	}
}
