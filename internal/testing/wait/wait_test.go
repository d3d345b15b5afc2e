package wait

import (
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	n := 0
	if !Until(time.Second, func() bool { n++; return n == 3 }) {
		t.Fatal("Until(cond true on 3rd poll) = false, want true")
	}
	if Until(20*time.Millisecond, func() bool { return false }) {
		t.Fatal("Until(never) = true, want false")
	}
}
