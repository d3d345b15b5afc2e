package consul

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Watch implements registry.Discovery. It starts one blocking-query loop
// per datacenter and returns at once; ctx is not used after Watch
// returns.
func (r *Registry) Watch(ctx context.Context, service string) (registry.Watcher, error) {
	if err := registry.ValidateService(service); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	w := &watcher{
		r:       r,
		service: service,
		cancel:  cancel,
		closed:  make(chan struct{}),
		dcs:     r.datacenters(),
		sets:    map[string][]registry.Instance{},
		indexes: map[string]uint64{},
		state:   map[string]dcState{},
		signal:  make(chan struct{}),
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		cancel()
		return nil, r.errClosed()
	}
	r.watchers[w] = struct{}{}
	r.mu.Unlock()
	for _, dc := range w.dcs {
		w.wg.Go(func() { w.follow(loopCtx, dc) })
	}
	return w, nil
}

type dcState int

const (
	dcNew     dcState = iota // no answer yet
	dcOK                     // last read succeeded
	dcFailing                // last read failed
)

// watcher merges the blocking-query loops of its datacenters into the
// single stream Next returns.
//
// The loops publish into the fields under mu: a set when it differs from
// the last published one (or a datacenter recovers), an error when a
// datacenter starts failing. Each publication takes the next seq, and
// signal is closed and replaced to wake Next. The loops never wait for
// Next: a slow consumer just sees the latest set.
type watcher struct {
	r       *Registry
	service string
	dcs     []string
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	closeOnce sync.Once
	closed    chan struct{}

	mu       sync.Mutex
	sets     map[string][]registry.Instance // last good set per datacenter
	indexes  map[string]uint64              // X-Consul-Index of each set in sets
	state    map[string]dcState
	cur      []registry.Instance // last published merged set
	curIndex string              // the indexes cur was read at (see Index)
	hasSet   bool
	seq      uint64
	setSeq   uint64
	err      error
	errSeq   uint64
	signal   chan struct{}

	// index is the curIndex of the set Next last returned; nil before
	// the first. Next stores it; Index may load it from any goroutine.
	index atomic.Pointer[string]

	// Owned by the goroutine calling Next.
	seenSet, seenErr  uint64
	started, afterErr bool
	last              []registry.Instance
}

var _ registry.IndexedWatcher = (*watcher)(nil)

// Index implements registry.IndexedWatcher: the X-Consul-Index of the
// blocking query that read the set Next last returned, such as "120".
// With several datacenters it lists each datacenter's, in the order they
// were configured, such as "dc1=120 dc2=87"; a datacenter that has never
// answered is left out. It is "" before Next has returned a set.
func (w *watcher) Index() string {
	if p := w.index.Load(); p != nil {
		return *p
	}
	return ""
}

// indexLocked formats the indexes of the datacenters' last good sets, as
// Index reports them.
func (w *watcher) indexLocked() string {
	if len(w.dcs) == 1 {
		if _, ok := w.sets[w.dcs[0]]; !ok {
			return ""
		}
		return strconv.FormatUint(w.indexes[w.dcs[0]], 10)
	}
	var b strings.Builder
	for _, dc := range w.dcs {
		if _, ok := w.sets[dc]; !ok {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(dc)
		b.WriteByte('=')
		b.WriteString(strconv.FormatUint(w.indexes[dc], 10))
	}
	return b.String()
}

func (w *watcher) notifyLocked() {
	close(w.signal)
	w.signal = make(chan struct{})
}

// mergedLocked returns the union of the datacenters' last good sets and
// whether every datacenter has answered at least once, with a set or an
// error.
func (w *watcher) mergedLocked() ([]registry.Instance, bool, bool) {
	var all []registry.Instance
	ready, anyOK := true, false
	for _, dc := range w.dcs {
		switch w.state[dc] {
		case dcNew:
			ready = false
		}
		if s, ok := w.sets[dc]; ok {
			anyOK = true
			all = append(all, s...)
		}
	}
	sortInstances(all)
	return all, ready, anyOK
}

// publishSet records insts, read from dc at Consul index index, and
// publishes the merged set if it changed.
func (w *watcher) publishSet(dc string, insts []registry.Instance, index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	recovered := w.state[dc] == dcFailing
	w.state[dc] = dcOK
	w.sets[dc] = insts
	w.indexes[dc] = index
	merged, ready, _ := w.mergedLocked()
	if !ready {
		return
	}
	if w.hasSet && !recovered && registry.EqualSets(merged, w.cur) {
		return // a wake-up without a change: compare before emitting
	}
	w.cur, w.curIndex, w.hasSet = merged, w.indexLocked(), true
	w.seq++
	w.setSeq = w.seq
	w.notifyLocked()
}

// publishErr reports err once per failure episode of dc, and keeps the
// last good set: an error never empties the set.
func (w *watcher) publishErr(dc string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	was := w.state[dc]
	w.state[dc] = dcFailing
	if was == dcFailing {
		w.err = err // same episode: keep the freshest text, no new event
		return
	}
	w.err = err
	w.seq++
	w.errSeq = w.seq
	// If this was the last datacenter to answer, the others' sets can be
	// published now rather than when one of them next changes.
	if merged, ready, anyOK := w.mergedLocked(); ready && anyOK && !w.hasSet {
		w.cur, w.curIndex, w.hasSet = merged, w.indexLocked(), true
		w.seq++
		w.setSeq = w.seq
	}
	w.notifyLocked()
}

// follow runs the blocking-query loop of one datacenter, with its own
// index, rate limit and backoff, until ctx is cancelled.
func (w *watcher) follow(ctx context.Context, dc string) {
	r := w.r
	cfg := &r.cfg
	lim := newBucket(cfg.rate, 2)
	var index uint64
	failures := 0
	for {
		if !lim.wait(ctx) {
			return
		}
		insts, next, err := r.query(ctx, w.service, dc, index)
		if ctx.Err() != nil {
			return
		}
		r.counters.queries.Add(1)
		if err != nil {
			r.counters.queryErrors.Add(1)
			failures++
			werr := wrapErr(fmt.Sprintf("watch %q%s", w.service, dcSuffix(dc)), err)
			if failures == 1 || failures%20 == 0 {
				r.log.Warn("consul: watch failing; retrying", "service", w.service, "dc", dc, "failures", failures, "err", werr)
			}
			w.publishErr(dc, werr)
			// The next read must not block: after an error, the set is
			// reported as soon as it can be read, changed or not.
			index = 0
			if !r.waitRetry(ctx, backoff(failures, cfg.backoffBase, cfg.backoffMax)) {
				return
			}
			continue
		}
		if failures > 0 {
			r.log.Info("consul: watch recovered", "service", w.service, "dc", dc, "after_failures", failures)
		}
		failures = 0
		if next < index {
			r.counters.indexResets.Add(1)
		}
		index = nextIndex(index, next)
		w.publishSet(dc, insts, next)
	}
}

// nextIndex applies Consul's blocking-query rules to the index returned
// after a query made with prev: an index that went backwards (a server
// restored from a snapshot, or a new cluster) resets to 0, a full read;
// and a query never blocks on an index below 1, which would return at
// once forever.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got < prev:
		return 0
	case got < 1:
		return 1
	}
	return got
}

// Next implements registry.Watcher.
func (w *watcher) Next(ctx context.Context) ([]registry.Instance, error) {
	for {
		select {
		case <-w.closed:
			return nil, fmt.Errorf("consul: watch %q: %w", w.service, registry.ErrClosed)
		default:
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		w.mu.Lock()
		wake := w.signal
		// Events are taken in the order they happened: a set published
		// before an error is considered before that error.
		if w.setSeq > w.seenSet && (w.errSeq <= w.seenErr || w.setSeq < w.errSeq) {
			w.seenSet = w.setSeq
			cur := w.cur
			if !w.started || w.afterErr || !registry.EqualSets(cur, w.last) {
				w.started, w.afterErr, w.last = true, false, cur
				idx := w.curIndex
				w.index.Store(&idx)
				w.mu.Unlock()
				return cloneAll(cur), nil
			}
		}
		if w.errSeq > w.seenErr {
			w.seenErr = w.errSeq
			err := w.err
			w.afterErr = true
			w.mu.Unlock()
			return nil, err
		}
		w.mu.Unlock()
		select {
		case <-wake:
		case <-w.closed:
		case <-ctx.Done():
		}
	}
}

func cloneAll(in []registry.Instance) []registry.Instance {
	out := make([]registry.Instance, len(in))
	for i, inst := range in {
		out[i] = inst.Clone()
	}
	return out
}

// Close implements registry.Watcher: it cancels the loops and waits for
// them. It is idempotent.
func (w *watcher) Close() error {
	w.r.mu.Lock()
	delete(w.r.watchers, w)
	w.r.mu.Unlock()
	w.shutdown()
	return nil
}

func (w *watcher) shutdown() {
	w.closeOnce.Do(func() {
		close(w.closed)
		w.cancel()
	})
	w.wg.Wait()
}

// bucket is a token bucket: burst tokens, refilled at rate per second.
// It is used by one goroutine.
type bucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int) *bucket {
	return &bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: time.Now()}
}

// wait takes a token, sleeping until one is available or ctx is done.
func (b *bucket) wait(ctx context.Context) bool {
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	d := time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
	if !sleep(ctx, d) {
		return false
	}
	b.last = time.Now()
	b.tokens = 0
	return true
}
