package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/wayfinder-rpc/wayfinder/internal/backoff"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
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
// Each resolver reads its own driver.Watcher, which the watch feeds: the
// watch contract (dedupe, one error per outage, re-send after recovery)
// is the driver package's, not the cache's.
//
// Lock ordering: Cache.mu before watch.mu. Neither is held while calling
// gRPC or a registry's network methods; registry.OpenURL, which must not
// block (registry.Opener), is called under Cache.mu so that concurrent
// resolvers of one URL share one registry client.
type Cache struct {
	linger time.Duration
	logger *slog.Logger

	guardFrac float64 // see WithMassRemovalGuard
	guardMin  int
	guardHold time.Duration
	// guardWindow: see WithMassRemovalWindow.
	guardWindow time.Duration
	meter       metric.MeterProvider
	mux         *registry.URLMux // opens registries named by targets
	now         func() time.Time
	metrics     *cacheMetrics

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

// WithLogger sets the logger for upstream watch outages: the first error
// at Warn, the rest at Debug with a Warn reminder every minute, the
// recovery at Info; and for the resolvers built on the cache, which log
// at Debug a state gRPC rejected. The default discards.
func WithLogger(l *slog.Logger) CacheOption { return func(c *Cache) { c.logger = l } }

// WithMeterProvider records the cache's metrics (see metrics.go) with mp.
// The default is OpenTelemetry's global provider, a no-op until the
// program installs one.
func WithMeterProvider(mp metric.MeterProvider) CacheOption { return func(c *Cache) { c.meter = mp } }

// WithURLMux makes the cache open the registries that URL targets name
// with mux, instead of registry.DefaultURLMux: for registries configured
// by the program, such as backends' URLOpeners with its logger.
// Targets' schemes are then mux's.
func WithURLMux(mux *registry.URLMux) CacheOption { return func(c *Cache) { c.mux = mux } }

// NewCache returns an empty cache. Close it to stop its watches.
func NewCache(opts ...CacheOption) *Cache {
	c := &Cache{
		linger: DefaultLinger,

		guardFrac:   DefaultGuardFraction,
		guardMin:    DefaultGuardMin,
		guardHold:   DefaultGuardHold,
		guardWindow: DefaultGuardWindow,
		logger:      slog.New(slog.DiscardHandler),
		mux:         registry.DefaultURLMux(),
		now:         time.Now,
		watches:     map[watchKey]*watch{},
		regs:        map[string]*openRegistry{},
		urlB:        map[string]*Builder{},
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
	kept      []string            // IDs in instances the guard keeps (KeptInstances); nil if none
	ok        bool                // a set has been read
	err       error               // the error since the last good read, if any
}

// subscription is one resolver's view of a watch: its own watcher, fed
// with the watch's sets cut to the resolver's subset.
type subscription struct {
	feed       *driver.Watcher
	subsetSize int
	subsetKey  string
}

// set feeds the subscription's subset of st. The resolver's feed carries
// no registry index (nothing reads one there); its index says which
// instances of the set the guard kept (see keptNote).
func (s subscription) set(st state) {
	insts := ConnectionSubset(st.instances, s.subsetSize, s.subsetKey)
	s.feed.Set(insts, keptNote(insts, st.kept))
}

// keptNote lists the positions in insts of the instances whose IDs are in
// kept, as "3,5"; "" if none. Positions, not IDs, so that no ID needs
// escaping. Both are sorted by ID (a published set is, Subset keeps its
// order, and the guard lists kept in the order of a published set), so
// one merge finds them, and the feed does not reorder insts.
func keptNote(insts []registry.Instance, kept []string) string {
	var b []byte
	for i, k := 0, 0; i < len(insts) && k < len(kept); {
		switch c := strings.Compare(insts[i].ID, kept[k]); {
		case c < 0:
			i++
		case c > 0:
			k++
		default:
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(i), 10)
			i++
			k++
		}
	}
	return string(b)
}

// keptFromNote returns the IDs of the instances of insts that note, made
// by keptNote for the same set, names; nil if none.
func keptFromNote(insts []registry.Instance, note string) []string {
	if note == "" {
		return nil
	}
	var kept []string
	for f := range strings.SplitSeq(note, ",") {
		if i, err := strconv.Atoi(f); err == nil && i >= 0 && i < len(insts) {
			kept = append(kept, insts[i].ID)
		}
	}
	return kept
}

type watch struct {
	cache   *Cache
	key     watchKey
	service string
	cancel  context.CancelFunc
	done    chan struct{}
	release func() // releases a registry opened for this watch; may be nil
	// problems is the Discovery, if it keeps the optional fields it
	// could not read (registry.FieldProblemReporter), for Watches.
	problems registry.FieldProblemReporter

	attrs metric.MeasurementOption // the watch's metric attributes, built once

	mu          sync.Mutex // guards the fields below
	refs        int
	st          state
	subs        map[*driver.Watcher]subscription
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
	holdBase  []registry.Instance // the set a held loss is measured against: the window's largest when the hold began
	holdKeep  []registry.Instance // the set clients had when the hold began: what a hold keeps
	holdTimer *time.Timer
	held      int64 // mass removals held
	// guardRef is the largest set clients had within the guard's window,
	// and guardRefAt when it was last current (see guardLocked).
	guardRef   []registry.Instance
	guardRefAt time.Time
	stopped    bool
}

// ErrCacheClosed is returned when building a resolver on a closed Cache.
var ErrCacheClosed = errors.New("wayfinder resolver: cache closed")

// acquire returns the watch for key, starting it with the Discovery that
// open returns if it is not running, and subscribes sub. sub's watcher is
// fed at once with what the watch knows, so that a resolver built while
// the watch runs answers from the cache. The caller must call
// watch.unsubscribe with the same watcher.
func (c *Cache) acquire(key watchKey, sub subscription, open func() (registry.Discovery, func(), error)) (*watch, error) {
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
			release: release, subs: map[*driver.Watcher]subscription{}, started: c.now(), attrs: attrs(key)}
		w.problems, _ = d.(registry.FieldProblemReporter)
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
	w.subs[sub.feed] = sub
	if w.st.ok {
		sub.set(w.st) // answer at once from the cache
	}
	if w.st.err != nil {
		sub.feed.Fail(w.st.err) // after the last good set, as it happened
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
		reg, err := c.mux.OpenURL(context.Background(), u)
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

func (w *watch) unsubscribe(feed *driver.Watcher) {
	c := w.cache
	c.mu.Lock()
	w.mu.Lock()
	if _, ok := w.subs[feed]; !ok {
		w.mu.Unlock()
		c.mu.Unlock()
		return
	}
	delete(w.subs, feed)
	w.refs--
	if c.closed || w.stopped {
		// Cache.Close already stopped the watch and released its
		// registry; a resolver closed later must not do it again.
		w.mu.Unlock()
		c.mu.Unlock()
		return
	}
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

// publish records a good read, made at the registry's index (empty if
// the watcher does not say), and wakes subscribers if anything changed.
func (w *watch) publish(insts []registry.Instance, index string) {
	now := w.cache.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastGood = now
	w.upstream = insts
	w.index = index
	out, kept := w.guardLocked(insts, now)
	w.setLocked(out, kept, now)
}

// setLocked publishes insts, of which the guard keeps the IDs in kept, if
// they differ from what subscribers have. An unchanged set is not
// published even if kept changed (a kept instance the registry lists
// again); resolvers built later are told the new kept. Callers hold w.mu.
func (w *watch) setLocked(insts []registry.Instance, kept []string, now time.Time) {
	if w.st.ok && w.st.err == nil && driver.EqualSets(w.st.instances, insts) {
		w.st.kept = kept
		return
	}
	w.st = state{instances: insts, kept: kept, ok: true}
	w.updates++
	w.lastChange = now
	w.cache.metrics.update(w.attrs)
	for _, sub := range w.subs {
		sub.set(w.st)
	}
}

// publishErr records an error. The last good set is kept.
func (w *watch) publishErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.st.err = err
	w.errors++
	w.cache.metrics.error(w.attrs)
	for feed := range w.subs {
		feed.Fail(err)
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
	bo := backoff.Backoff{Base: minBackoff, Max: maxBackoff}
	ol := &outageLog{log: w.cache.logger, service: w.service}
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
			if !backoff.Sleep(ctx, bo.Next()) {
				return
			}
			continue
		}
		w.follow(ctx, wt, &bo, ol)
		wt.Close()
	}
}

// follow reads wt until ctx is done or wt is closed under it.
func (w *watch) follow(ctx context.Context, wt registry.Watcher, bo *backoff.Backoff, ol *outageLog) {
	iw, _ := wt.(registry.IndexedWatcher)
	for {
		insts, err := wt.Next(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			ol.failed(w.cache.now(), err)
			w.publishErr(err) // backends name the service in their errors
			if !backoff.Sleep(ctx, bo.Next()) || errors.Is(err, registry.ErrClosed) {
				return // re-watch, unless ctx is done
			}
			continue
		}
		bo.Reset()
		ol.ok(w.cache.now())
		index := ""
		if iw != nil {
			index = iw.Index()
		}
		w.publish(insts, index)
	}
}
