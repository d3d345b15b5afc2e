package clock

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait for outcomes only: the clock's goroutine runs on the scheduler's
// time, so no delay is asserted.
const timeout = 10 * time.Second

func TestLifecycle(t *testing.T) {
	c := &Clock{wake: make(chan struct{}, 1)}
	if _, exact := c.Now(); !exact {
		t.Fatal("Now() without a reference is coarse, want exact")
	}

	c.Acquire()
	wait.For(t, timeout, "coarse while read", func() bool { _, exact := c.Now(); return !exact })
	before := Exact()
	wait.For(t, timeout, "coarse time advances", func() bool { ns, _ := c.Now(); return ns > before })
	if ns, exact := c.Now(); !exact {
		if now := Exact(); ns > now || now-ns > int64(time.Second) {
			t.Errorf("coarse time %d is not shortly before exact time %d", ns, now)
		}
	}

	// Unread, it parks; the next read is exact and wakes it.
	wait.For(t, timeout, "parked when unread", func() bool { return !c.running.Load() })
	if _, exact := c.Now(); !exact {
		t.Error("first Now() after parking is coarse, want exact")
	}
	wait.For(t, timeout, "awake again after a read", func() bool { _, exact := c.Now(); return !exact })

	c.Acquire()
	c.Release()
	wait.For(t, timeout, "still running with a reference left", func() bool { _, exact := c.Now(); return !exact })
	c.Release() // stops and waits; goleak checks the goroutine is gone
	if c.running.Load() {
		t.Error("running after the last Release")
	}
	if _, exact := c.Now(); !exact {
		t.Error("Now() after the last Release is coarse, want exact")
	}
}

func TestReleaseWithoutAcquirePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Release without Acquire did not panic")
		}
	}()
	(&Clock{wake: make(chan struct{}, 1)}).Release()
}

func BenchmarkNow(b *testing.B) {
	c := Shared()
	c.Acquire()
	defer c.Release()
	var sink int64
	for b.Loop() {
		ns, _ := c.Now()
		sink += ns
	}
	_ = sink
}

func BenchmarkExact(b *testing.B) {
	var sink int64
	for b.Loop() {
		sink += Exact()
	}
	_ = sink
}
