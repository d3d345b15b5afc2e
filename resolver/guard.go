package resolver

import (
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// Mass-removal guard defaults: updates that, within 10 s, leave less
// than half of a service of at least 2 instances, or that empty a
// service, are held for up to 10 s.
const (
	DefaultGuardFraction = 0.5
	DefaultGuardMin      = 2
	DefaultGuardHold     = 10 * time.Second
	DefaultGuardWindow   = 10 * time.Second
)

// WithMassRemovalGuard configures the guard against mass removals, the
// failure behind go-micro#2821, where a registry hiccup (an agent
// restart, an auth storm, expired leases) made thousands of instances
// vanish at once and every client emptied its pool, and behind a
// restarted Consul agent whose passing view loses instances until their
// next heartbeat. When updates would shrink a service of at least min
// instances by more than fraction, measured against the largest set
// clients had within the window (WithMassRemovalWindow, so that a
// cascade of smaller steps counts as one loss), or would leave a service
// with no instance at all, the cache keeps the lost instances that
// clients still had (never one an earlier update already removed) (while
// passing on additions and changes) for up to hold; if they come back by
// then nothing was disrupted, and if they do not, the update is applied
// in full. So a deliberate removal reaches clients at once when it
// leaves at least (1 - fraction) of the window's largest set, and within
// hold otherwise, the last instance of a service included. Rolling
// restarts (which replace instances without shrinking the service) are
// never held. A held state names the instances it keeps: see
// KeptInstances. hold 0 disables the guard.
func WithMassRemovalGuard(fraction float64, min int, hold time.Duration) CacheOption {
	return func(c *Cache) { c.guardFrac, c.guardMin, c.guardHold = fraction, min, hold }
}

// WithMassRemovalWindow sets how far back the mass-removal guard looks
// for the set it measures a loss against (DefaultGuardWindow): the
// largest set clients had within d. 0 judges each update on its own, as
// the guard did before it had a window. It should not exceed the hold.
func WithMassRemovalWindow(d time.Duration) CacheOption {
	return func(c *Cache) { c.guardWindow = d }
}

// guardLocked decides what to publish for an upstream set: the set
// itself, or, while a mass removal is held, the set plus the instances
// it lost, whose IDs it returns as kept (nil when nothing is kept).
// Callers hold w.mu.
//
// The test is on capacity, over the window: an update that leaves fewer
// than (1 - fraction) of the largest set clients had within the window
// is held, and so is one that leaves none. That is how a registry that
// forgot its state answers: all at once, or (Consul's passing view after
// an agent restart) in a cascade of smaller steps a few seconds apart.
// Rolling restarts, which replace instances without shrinking the
// service, pass straight through.
func (w *watch) guardLocked(insts []registry.Instance, now time.Time) (out []registry.Instance, kept []string) {
	c := w.cache
	if c.guardHold <= 0 || !w.st.ok {
		w.clearHoldLocked()
		w.guardRef = nil
		return insts, nil
	}
	base := w.st.instances
	// The reference: the largest set clients had within the window. It
	// is refreshed whenever what clients have now is at least as large,
	// so guardRefAt is when it was last current.
	if w.guardRef == nil || len(base) >= len(w.guardRef) || now.Sub(w.guardRefAt) > c.guardWindow {
		w.guardRef, w.guardRefAt = base, now
	}
	if len(w.guardRef) > len(base) {
		base = w.guardRef
	}
	if !w.holdSince.IsZero() {
		base = w.holdBase
	}
	emptied := len(insts) == 0 && len(base) > 0
	if !emptied && (len(base) < c.guardMin || float64(len(insts)) >= (1-c.guardFrac)*float64(len(base))) {
		w.clearHoldLocked()
		return insts, nil
	}
	if w.holdSince.IsZero() {
		// Keep what clients have, never more: an instance they were
		// already told is gone (an earlier step of the window, such as
		// a ghost leaving a restarted agent's passing view) must not
		// come back with the hold.
		w.holdSince, w.holdBase, w.holdKeep = now, base, w.st.instances
		w.held++
		c.metrics.held(w.attrs)
		c.logger.Warn("wayfinder resolver: holding a mass removal", "service", w.service,
			"instances", len(insts), "was", len(base), "hold", c.guardHold)
		w.holdTimer = time.AfterFunc(c.guardHold, w.releaseHold)
	}
	if now.Sub(w.holdSince) >= c.guardHold {
		w.clearHoldLocked()
		return insts, nil
	}
	in := make(map[string]bool, len(insts))
	for _, i := range insts {
		in[i.ID] = true
	}
	out = append([]registry.Instance(nil), insts...)
	for _, b := range w.holdKeep { // sorted by ID: kept is too
		if !in[b.ID] {
			out = append(out, b)
			kept = append(kept, b.ID)
		}
	}
	return driver.Normalize(out), kept
}

func (w *watch) clearHoldLocked() {
	if w.holdTimer != nil {
		w.holdTimer.Stop()
		w.holdTimer = nil
	}
	w.holdSince, w.holdBase, w.holdKeep = time.Time{}, nil, nil
}

// releaseHold applies the latest upstream set once the hold expires.
func (w *watch) releaseHold() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.holdSince.IsZero() || w.stopped {
		return
	}
	w.clearHoldLocked()
	w.guardRef = nil // the loss is accepted: measure the next one from here
	w.cache.logger.Warn("wayfinder resolver: mass removal held to its limit; applying it", "service", w.service)
	w.setLocked(w.upstream, nil, w.cache.now())
}
