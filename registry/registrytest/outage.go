package registrytest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// outage starts an outage that ends with the test at the latest.
func (s *suite) outage(t *testing.T) (restore func()) {
	t.Helper()
	r := s.h.Outage(t)
	var done bool
	restore = func() {
		if !done {
			done = true
			r()
		}
	}
	t.Cleanup(restore)
	return restore
}

// nextError calls Next until it returns an error, which must wrap
// registry.ErrUnavailable. Any set it returns first, from a read made
// before the cut, must hold want: an outage never shrinks the set.
func (s *suite) nextError(t *testing.T, w registry.Watcher, want ...registry.Instance) error {
	t.Helper()
	ctx := s.ctx(t)
	for {
		got, err := w.Next(ctx)
		if ctx.Err() != nil {
			t.Fatalf("Next() reported no error within %v of the outage", s.timeout)
		}
		if err == nil {
			if !sameIDs(got, want...) {
				t.Fatalf("Next() during the outage = %v, want an error (or the set %v read before it)", ids(got), ids(want))
			}
			continue
		}
		if !errors.Is(err, registry.ErrUnavailable) || got != nil {
			t.Fatalf("Next() during the outage = %v, %v; want nil and an error wrapping ErrUnavailable", ids(got), err)
		}
		return err
	}
}

// blocks checks that Next returns nothing for d.
func blocks(t *testing.T, w registry.Watcher, d time.Duration, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	if got, err := w.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next() %s = %v, %v; want nothing within %v", what, ids(got), err, d)
	}
}

func (s *suite) watching(t *testing.T, r registry.Registry, svc string, want ...registry.Instance) registry.Watcher {
	t.Helper()
	w, err := r.Watch(s.ctx(t), svc)
	if err != nil {
		t.Fatalf("Watch(%q) = %v", svc, err)
	}
	t.Cleanup(func() { w.Close() })
	s.nextUntil(t, w, "the registered instances", func(in []registry.Instance) bool { return sameIDs(in, want...) })
	return w
}

// watchThroughOutage registers a, watches it, and starts an outage whose
// error the watcher has returned.
func (s *suite) watchThroughOutage(t *testing.T) (a registry.Instance, w registry.Watcher, restore func()) {
	t.Helper()
	r := s.open(t)
	svc := ServiceName(t)
	a = MakeInstance(svc, 1)
	s.mustRegister(t, r, a)
	w = s.watching(t, r, svc, a)
	restore = s.outage(t)
	s.nextError(t, w, a)
	return a, w, restore
}

// An outage is one error, never an empty or smaller set, and the
// registry's reads fail rather than answer empty.
func testOutageErrorsNeverEmpty(t *testing.T, s *suite) {
	r := s.open(t)
	svc := ServiceName(t)
	a, b := MakeInstance(svc, 1), MakeInstance(svc, 2)
	s.mustRegister(t, r, a)
	s.mustRegister(t, r, b)
	w := s.watching(t, r, svc, a, b)
	s.outage(t)
	s.nextError(t, w, a, b)
	blocks(t, w, time.Second, "after the outage's error, while it lasts")
	if got, err := r.Lookup(s.ctx(t), svc); !errors.Is(err, registry.ErrUnavailable) || got != nil {
		t.Fatalf("Lookup(%q) during the outage = %v, %v; want nil and ErrUnavailable", svc, ids(got), err)
	}
}

// After an outage's error, Next returns the set again though it did not
// change, so that the caller sees the recovery.
func testRecoveryResends(t *testing.T, s *suite) {
	a, w, restore := s.watchThroughOutage(t)
	restore()
	got, err := w.Next(s.ctx(t))
	if err != nil || !sameIDs(got, a) {
		t.Fatalf("first Next() after the outage = %v, %v; want the unchanged set [%s]", ids(got), err, a.ID)
	}
}

// A watch started during an outage reports it at once: its first Next is
// an error, not an empty set.
func testFirstNextDuringOutage(t *testing.T, s *suite) {
	r := s.open(t)
	svc := ServiceName(t)
	a := MakeInstance(svc, 1)
	s.mustRegister(t, r, a)
	s.eventuallyLookup(t, r, svc, "a", func(in []registry.Instance) bool { return sameIDs(in, a) })
	restore := s.outage(t)
	w, err := r.Watch(s.ctx(t), svc)
	if err != nil {
		t.Fatalf("Watch(%q) during an outage = %v; want a watcher (Watch must not need the network)", svc, err)
	}
	defer w.Close()
	s.nextError(t, w)
	restore()
	s.nextUntil(t, w, "a after the outage", func(in []registry.Instance) bool { return sameIDs(in, a) })
}

// Close unblocks a Next waiting out an outage.
func testCloseDuringOutage(t *testing.T, s *suite) {
	_, w, _ := s.watchThroughOutage(t)
	done := make(chan error, 1)
	go func() {
		_, err := w.Next(context.Background())
		done <- err
	}()
	if err := w.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, registry.ErrClosed) {
			t.Fatalf("Next() pending through an outage, after Close = %v, want ErrClosed", err)
		}
	case <-time.After(s.timeout):
		t.Fatalf("Next() still blocked %v after Close during an outage", s.timeout)
	}
}

// What changed in the registry while a client was cut off is what it
// sees once it is back, and it never sees less than it had.
func testChangeDuringOutage(t *testing.T, s *suite) {
	r := s.open(t)
	outside := s.h.NewOutsideRegistry(t)
	t.Cleanup(func() { outside.Close() })
	svc := ServiceName(t)
	a, c := MakeInstance(svc, 1), MakeInstance(svc, 3)
	s.mustRegister(t, r, a)
	w := s.watching(t, r, svc, a)
	restore := s.outage(t)
	s.nextError(t, w, a)
	s.mustRegister(t, outside, c)
	s.eventuallyLookup(t, outside, svc, "a and c, outside the outage", func(in []registry.Instance) bool { return sameIDs(in, a, c) })
	restore()
	ctx := s.ctx(t)
	for {
		got, err := w.Next(ctx)
		if ctx.Err() != nil {
			t.Fatalf("Next() never showed the change made during the outage within %v", s.timeout)
		}
		if err != nil {
			continue // the outage's tail; errors are allowed, empty sets are not
		}
		if sameIDs(got, a, c) {
			return
		}
		if !sameIDs(got, a) {
			t.Fatalf("Next() after the outage = %v, want [%s] or [%s %s]", ids(got), a.ID, a.ID, c.ID)
		}
	}
}

// A registry that goes silent, its connections open (a frozen process),
// is an outage too: Next reports it within the backend's liveness bound,
// and the set comes back when the registry answers again.
func testSilentRegistry(t *testing.T, s *suite) {
	st := s.h.(Staller) // RunConformanceTests runs this case only for a Staller
	r, out := s.open(t), s.h.NewOutsideRegistry(t)
	svc := ServiceName(t)
	a := MakeInstance(svc, 1)
	s.mustRegister(t, out, a)
	w := s.watching(t, r, svc, a)
	restore := st.Stall(t)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			restore()
		}
	})
	start := time.Now()
	err := s.nextError(t, w, a)
	t.Logf("silent registry reported after %v: %v", time.Since(start).Round(time.Millisecond), err)
	restore()
	stopped = true
	s.nextUntil(t, w, "the set once the registry answers again", func(in []registry.Instance) bool { return sameIDs(in, a) })
	s.mustDeregister(t, out, a)
}
