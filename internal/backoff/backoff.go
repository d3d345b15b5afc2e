// Package backoff is Wayfinder's one retry delay: capped exponential
// backoff with jitter over the upper half of each step, so that many
// clients failing together do not retry together, and a sleep that
// returns early when its context ends.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay returns the delay after n consecutive failures (n >= 1): base
// doubled n-1 times, capped at max, then drawn uniformly from its upper
// half. n < 1 counts as 1.
func Delay(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// Backoff counts consecutive failures. The zero value is not usable; set
// Base and Max. It is used by one goroutine.
type Backoff struct {
	Base, Max time.Duration
	n         int
}

// Next counts one more failure and returns the delay before the retry.
func (b *Backoff) Next() time.Duration {
	b.n++
	return Delay(b.n, b.Base, b.Max)
}

// Reset forgets the failures, after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Failures returns the failures counted since the last Reset.
func (b *Backoff) Failures() int { return b.n }

// Sleep waits for d or until ctx is done, reporting whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
