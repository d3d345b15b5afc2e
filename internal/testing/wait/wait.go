// Package wait is the tests' one way to wait for a condition: poll it
// until it holds or a deadline passes. Tests wait for conditions, never
// for durations.
package wait

import (
	"testing"
	"time"
)

// Interval is how often For polls.
const Interval = 5 * time.Millisecond

// For polls cond every Interval until it holds, failing t if it still
// does not after timeout. what completes "timed out after 5s waiting for
// ...".
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Until(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// Until polls cond until it holds or timeout passes, and reports whether
// it held; for callers that fail in their own words.
func Until(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(Interval)
	}
	return true
}
