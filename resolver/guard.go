package resolver

import (
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// Mass-removal guard defaults: one update that removes more than half of
// a service of at least 2 instances is held for up to 10 s.
const (
	DefaultGuardFraction = 0.5
	DefaultGuardMin      = 2
	DefaultGuardHold     = 10 * time.Second
)

// WithMassRemovalGuard configures the guard against mass removals, the
// failure behind go-micro#2821, where a registry hiccup (an agent
// restart, an auth storm, expired leases) made thousands of instances
// vanish at once and every client emptied its pool, and behind a
// restarted Consul agent that answers with every restored check critical
// until the next heartbeat. When one update would shrink a service of at
// least min instances by more than fraction, the cache keeps the lost
// instances (while passing on additions and changes) for up to hold; if
// they come back by then nothing was disrupted, and if they do not, the
// update is applied in full. Removals one at a time, smaller losses,
// rolling restarts (which replace instances without shrinking the
// service) and services smaller than min are never held. hold 0 disables
// the guard.
func WithMassRemovalGuard(fraction float64, min int, hold time.Duration) CacheOption {
	return func(c *Cache) { c.guardFrac, c.guardMin, c.guardHold = fraction, min, hold }
}

// guardLocked decides what to publish for an upstream set: the set
// itself, or, while a mass removal is held, the set plus the instances
// it lost. Callers hold w.mu.
//
// The test is on capacity, in one update: an update that leaves fewer
// than (1 - fraction) of the instances clients have is held. That is how
// a registry that forgot its state answers (all at once), while
// deliberate removals one by one, and rolling restarts, which replace
// instances without shrinking the service, pass straight through.
func (w *watch) guardLocked(insts []registry.Instance, now time.Time) []registry.Instance {
	c := w.cache
	if c.guardHold <= 0 || !w.st.ok {
		w.clearHoldLocked()
		return insts
	}
	base := w.st.instances
	if !w.holdSince.IsZero() {
		base = w.holdBase
	}
	if len(base) < c.guardMin || float64(len(insts)) >= (1-c.guardFrac)*float64(len(base)) {
		w.clearHoldLocked()
		return insts
	}
	if w.holdSince.IsZero() {
		w.holdSince, w.holdBase = now, base
		w.held++
		c.metrics.held(w.attrs)
		c.logger.Warn("wayfinder resolver: holding a mass removal", "service", w.service,
			"instances", len(insts), "was", len(base), "hold", c.guardHold)
		w.holdTimer = time.AfterFunc(c.guardHold, w.releaseHold)
	}
	if now.Sub(w.holdSince) >= c.guardHold {
		w.clearHoldLocked()
		return insts
	}
	in := make(map[string]bool, len(insts))
	for _, i := range insts {
		in[i.ID] = true
	}
	out := append([]registry.Instance(nil), insts...)
	for _, b := range base {
		if !in[b.ID] {
			out = append(out, b)
		}
	}
	return driver.Normalize(out)
}

func (w *watch) clearHoldLocked() {
	if w.holdTimer != nil {
		w.holdTimer.Stop()
		w.holdTimer = nil
	}
	w.holdSince, w.holdBase = time.Time{}, nil
}

// releaseHold applies the latest upstream set once the hold expires.
func (w *watch) releaseHold() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.holdSince.IsZero() || w.stopped {
		return
	}
	w.clearHoldLocked()
	w.cache.logger.Warn("wayfinder resolver: mass removal held to its limit; applying it", "service", w.service)
	w.setLocked(w.upstream, w.cache.now())
}
