package consul

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/backoff"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// Watch implements registry.Discovery. It starts one blocking-query loop
// per datacenter and returns at once; ctx is not used after Watch
// returns. The loops feed a driver.Watcher, which keeps the contract.
func (r *Registry) Watch(ctx context.Context, service string) (registry.Watcher, error) {
	return r.watchers.Watch(ctx, Scheme, service, func(ctx context.Context, feed *driver.Watcher) func() {
		w := &watcher{
			r:       r,
			service: service,
			dcs:     r.datacenters(),
			feed:    feed,
			sets:    map[string][]registry.Instance{},
			indexes: map[string]uint64{},
			state:   map[string]dcState{},
		}
		for _, dc := range w.dcs {
			w.wg.Go(func() { w.follow(ctx, dc) })
		}
		return w.wg.Wait
	}, driver.ReportTo(r.problems))
}

type dcState int

const (
	dcNew     dcState = iota // no answer yet
	dcOK                     // last read succeeded
	dcFailing                // last read failed
)

// watcher merges the blocking-query loops of its datacenters into the
// one set it feeds: the union of each datacenter's last good set, once
// every datacenter has answered, with each datacenter's outage reported
// once. mu guards the per-datacenter maps.
type watcher struct {
	r       *Registry
	service string
	dcs     []string
	feed    *driver.Watcher
	wg      sync.WaitGroup

	mu      sync.Mutex
	sets    map[string][]registry.Instance // last good set per datacenter
	indexes map[string]uint64              // X-Consul-Index of each set in sets
	state   map[string]dcState
	fed     bool // a merged set has been fed
}

// indexLocked formats the indexes of the datacenters' last good sets, as
// Index reports them: "120" with one datacenter; with several each
// datacenter's, in the order they were configured, such as "dc1=120
// dc2=87", leaving out a datacenter that has never answered.
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

// mergedLocked returns the datacenters' last good sets, in configured
// order so that the first datacenter's instance wins an ID that two
// share (driver.Normalize), whether every datacenter has answered at
// least once, with a set or an error, and whether any has a set.
func (w *watcher) mergedLocked() ([]registry.Instance, bool, bool) {
	var all []registry.Instance
	ready, anyOK := true, false
	for _, dc := range w.dcs {
		if w.state[dc] == dcNew {
			ready = false
		}
		if s, ok := w.sets[dc]; ok {
			anyOK = true
			all = append(all, s...)
		}
	}
	return all, ready, anyOK
}

// publishSet records insts, read from dc at Consul index index, and
// feeds the merged set once every datacenter has answered.
//
// It reports whether dc's set changed (or is its first), for the rate
// limit: an answer that changed nothing is Consul's index moving for
// another reason, the spin the limit is for.
func (w *watcher) publishSet(dc string, insts []registry.Instance, index uint64) (changed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev, seen := w.sets[dc]
	changed = !seen || !driver.EqualSets(prev, insts)
	w.state[dc] = dcOK
	w.sets[dc] = insts
	w.indexes[dc] = index
	if merged, ready, _ := w.mergedLocked(); ready {
		w.fed = true
		w.feed.Set(merged, w.indexLocked())
	}
	return changed
}

// publishErr reports err once per outage of dc; the feed keeps the last
// good set.
func (w *watcher) publishErr(dc string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	was := w.state[dc]
	w.state[dc] = dcFailing
	if was == dcFailing && len(w.dcs) > 1 {
		// The same outage of this datacenter; another one's sets may have
		// ended the feed's outage since, and must not start a new one.
		return
	}
	w.feed.Fail(err)
	// If this was the last datacenter to answer, the others' sets can be
	// fed now rather than when one of them next changes.
	if merged, ready, anyOK := w.mergedLocked(); ready && anyOK && !w.fed {
		w.fed = true
		w.feed.Set(merged, w.indexLocked())
	}
}

// follow runs the blocking-query loop of one datacenter, with its own
// index, rate limit and backoff, until ctx is cancelled.
func (w *watcher) follow(ctx context.Context, dc string) {
	r := w.r
	cfg := &r.cfg
	// Two limits: queries after an answer that changed nothing (index
	// churn: a query that keeps returning at once must not spin) at the
	// configured rate; queries after a change, which Consul paid for with
	// a write, at changeRateFactor times that, so that a watch following
	// real changes answers at once and only a storm is slowed.
	quiet := newBucket(cfg.rate, 2)
	busy := newBucket(changeRateFactor*cfg.rate, changeBurst)
	lim := quiet
	var index uint64
	failures := 0
	lastKind := ""
	// confirm: the next read is made in Consistent mode, and only its
	// answer is published. A restarted Consul server answers default-mode
	// reads from the state it restored from its last snapshot until it has
	// applied the rest of its log, at a lower X-Consul-Index: publishing
	// that would send clients back in time. A consistent read is refused
	// until the new leader has caught up. It is used after an error and
	// after an index that went backwards; not in Stale mode, whose users
	// chose possibly old answers.
	confirm := false
	canConfirm := cfg.consistency != ConsistencyStale
	// check is the probe's test of recovery while this loop waits out a
	// backoff: the loop's own read, not blocking, its answer dropped.
	check := func(ctx context.Context) error {
		_, _, err := r.query(ctx, w.service, dc, 0)
		return err
	}
	// backend is the agent's X-Consul-Query-Backend of the last blocking
	// query, logged when it changes.
	backend := "none yet"
	for {
		if !lim.wait(ctx) {
			return
		}
		type answer struct {
			insts   []registry.Instance
			next    uint64
			backend string
		}
		// Only blocking and cached queries can be streamed.
		blocking := index > 0 || (cfg.cached && !confirm)
		ans, err := guard(ctx, r, func(qctx context.Context) (answer, error) {
			insts, next, backend, err := r.queryMode(qctx, w.service, dc, index, confirm)
			return answer{insts, next, backend}, err
		})
		insts, next := ans.insts, ans.next
		if ctx.Err() != nil {
			return
		}
		r.counters.queries.Add(1)
		if err != nil {
			r.counters.queryErrors.Add(1)
			failures++
			bound := cfg.timeout
			if index > 0 {
				bound = r.requestTimeout(cfg.wait)
			}
			werr := r.unavailable(fmt.Sprintf("watch %q%s", w.service, dcSuffix(dc)), bound, err)
			// Warn at the start of an outage, when its kind changes (a
			// 500, then invalid JSON), and every 20th failure.
			kind := errKind(err)
			if failures == 1 || failures%20 == 0 || kind != lastKind {
				r.log.Warn("consul: watch failing; retrying", "service", w.service, "dc", dc, "failures", failures, "kind", kind, "err", werr)
			}
			lastKind = kind
			w.publishErr(dc, werr)
			// The next read must not block: after an error, the set is
			// reported as soon as it can be read, changed or not.
			index = 0
			confirm = canConfirm
			if !r.waitRetryCheck(ctx, backoff.Delay(failures, cfg.backoffBase, cfg.backoffMax), check) {
				return
			}
			continue
		}
		if failures > 0 {
			r.log.Info("consul: watch recovered", "service", w.service, "dc", dc, "after_failures", failures)
		}
		failures, lastKind = 0, ""
		if blocking {
			r.counters.countBackend(ans.backend)
			if ans.backend != backend {
				r.log.Debug("consul: the agent answers this watch's blocking queries with its query backend",
					"service", w.service, "dc", dc, "query_backend", cmp.Or(ans.backend, "unreported"), "was", backend)
				backend = ans.backend
			}
		}
		if next < index {
			r.counters.indexResets.Add(1)
			if canConfirm && !confirm {
				// Not published: read again, consistently, from 0.
				r.log.Info("consul: index went backwards; confirming with a consistent read", "service", w.service, "dc", dc, "index", index, "got", next)
				index, confirm = 0, true
				continue
			}
		}
		confirm = false
		index = nextIndex(index, next)
		lim = quiet
		if w.publishSet(dc, insts, next) {
			lim = busy
		}
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

// changeRateFactor and changeBurst set the limit of queries that follow
// a change of the watched set: WithRateLimit's rate times the factor.
const (
	changeRateFactor = 5
	changeBurst      = 10
)

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
	if !backoff.Sleep(ctx, d) {
		return false
	}
	b.last = time.Now()
	b.tokens = 0
	return true
}
