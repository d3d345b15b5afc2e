// Package clock is a monotonic clock cheap enough for pick paths.
//
// Reading the system clock costs 25-60 ns on common VMs, several times a
// whole round-robin pick. A Clock instead returns a time refreshed every
// Tick by one process-wide goroutine, which runs only while some balancer
// holds a reference and parks itself after a few ticks without readers:
// an idle process does not wake up every millisecond. While it is parked
// (or not running) Now reads the system clock itself and says so, so
// callers can tell an exact time from a coarse one.
package clock

import (
	"sync"
	"sync/atomic"
	"time"
)

// Tick is how often the coarse time is refreshed while in use: the most
// it lags behind the system clock.
const Tick = time.Millisecond

// idleTicks is how many ticks without a reader park the goroutine.
const idleTicks = 8

// epoch anchors the clock; nanoseconds since it fit an int64 for
// centuries.
var epoch = time.Now()

// Exact returns the system's monotonic time in nanoseconds since the
// package was loaded.
func Exact() int64 { return int64(time.Since(epoch)) }

// Clock is a shared coarse clock. The zero value is not usable; use
// Shared.
type Clock struct {
	now     atomic.Int64
	running atomic.Bool // the goroutine is awake and refreshing now
	used    atomic.Bool // Now was called since the last tick
	wake    chan struct{}

	mu   sync.Mutex // guards refs, stop and done
	refs int
	stop chan struct{}
	done chan struct{}
}

var shared = &Clock{wake: make(chan struct{}, 1)}

// Shared returns the process-wide clock.
func Shared() *Clock { return shared }

// Now returns the time in nanoseconds (the scale of Exact) and whether it
// was read from the system just now (exact) rather than from the last
// tick, which is at most about one Tick old.
func (c *Clock) Now() (ns int64, exact bool) {
	if ns, ok := c.Coarse(); ok {
		return ns, false
	}
	select { // parked or stopped: wake the goroutine, if any
	case c.wake <- struct{}{}:
	default:
	}
	return Exact(), true
}

// Coarse is Now while the goroutine runs: the last tick's time and true;
// otherwise it returns false, and the caller calls Now. It makes no call,
// so that it is inlined into pick paths.
func (c *Clock) Coarse() (ns int64, ok bool) {
	if !c.running.Load() {
		return 0, false
	}
	// Written at most once per tick per reader, so readers on other
	// cores mostly share the line rather than fight for it.
	if !c.used.Load() {
		c.used.Store(true)
	}
	return c.now.Load(), true
}

// Acquire starts the refreshing goroutine if it is not running; call
// Release when the caller no longer reads the clock. Without a reference
// Now still works, but always reads the system clock.
func (c *Clock) Acquire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refs++
	if c.refs == 1 {
		c.stop, c.done = make(chan struct{}), make(chan struct{})
		go c.run(c.stop, c.done)
	}
}

// Release drops a reference; the last one stops the goroutine and waits
// for it to exit.
func (c *Clock) Release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refs == 0 {
		panic("clock: Release without Acquire")
	}
	c.refs--
	if c.refs == 0 {
		close(c.stop)
		<-c.done
	}
}

func (c *Clock) run(stop, done chan struct{}) {
	defer close(done)
	defer c.running.Store(false)
	t := time.NewTicker(Tick)
	defer t.Stop()
	for {
		c.now.Store(Exact())
		c.running.Store(true)
		for idle := 0; idle < idleTicks; {
			select {
			case <-stop:
				return
			case <-t.C:
				c.now.Store(Exact())
				if c.used.Swap(false) {
					idle = 0
				} else {
					idle++
				}
			}
		}
		// Park. A reader that sees running false reads the system clock
		// and sends on wake, so none waits for the goroutine.
		c.running.Store(false)
		t.Stop()
		select {
		case <-stop:
			return
		case <-c.wake:
			t.Reset(Tick)
		}
	}
}
