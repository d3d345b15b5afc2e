package registrytest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Refuser is an optional interface of a Harness whose registry can
// refuse the connections of the clients NewRegistry returned, as an
// address where nothing listens does (a Proxy's Cut for backends on TCP,
// which closes every connection as soon as it is accepted), until
// restore. The suite then checks that Register, Deregister, Lookup and
// Services, called with a context without a deadline, each return
// within FrozenBound (a refusal is no reason to wait, but the suite
// asserts no speed) with an error wrapping registry.ErrUnavailable whose
// Cause is registry.CauseRefused and that names Addr (the Harness's
// Freezer half gives the bound and the name).
type Refuser interface {
	Refuse(t *testing.T) (restore func())
}

// frozenSlack is what the frozen and refused cases allow beyond
// FrozenBound: scheduling on a loaded machine, and a watch's liveness
// check that runs at intervals of a fraction of its bound.
func frozenSlack(bound time.Duration) time.Duration { return time.Second + bound/2 }

// freeze starts the harness's freeze; it ends with the test at the latest.
func (s *suite) freeze(t *testing.T, f Freezer) (restore func()) {
	t.Helper()
	r := f.Freeze(t)
	var once sync.Once
	restore = func() { once.Do(r) }
	t.Cleanup(restore)
	return restore
}

// unavailableCall is one call made against a registry that cannot be
// used, and what it returned.
type unavailableCall struct {
	name string
	took time.Duration
	err  error
	got  any // a result that should be nil
}

// callsWithoutDeadline makes Register, Deregister, Lookup and (when r
// implements it) Services with context.Background(), all at once, and
// returns what each returned. A call still blocked after limit is
// reported with a nil error and took = limit; its goroutine is left to
// the registry's Close, which the suite's cleanup does.
func callsWithoutDeadline(r registry.Registry, svc string, reg, dereg registry.Instance, limit time.Duration) []unavailableCall {
	ctx := context.Background()
	calls := map[string]func() (any, error){
		"Register":   func() (any, error) { return nil, r.Register(ctx, reg) },
		"Deregister": func() (any, error) { return nil, r.Deregister(ctx, dereg) },
		"Lookup": func() (any, error) {
			got, err := r.Lookup(ctx, svc)
			if got == nil {
				return nil, err
			}
			return ids(got), err
		},
	}
	if l, ok := r.(registry.ServiceLister); ok {
		calls["Services"] = func() (any, error) {
			got, err := l.Services(ctx)
			if got == nil {
				return nil, err
			}
			return got, err
		}
	}
	out := make(chan unavailableCall, len(calls))
	for name, f := range calls {
		go func() {
			start := time.Now()
			got, err := f()
			out <- unavailableCall{name: name, took: time.Since(start), err: err, got: got}
		}()
	}
	var res []unavailableCall
	timeout := time.After(limit)
	for range calls {
		select {
		case c := <-out:
			res = append(res, c)
		case <-timeout:
			for name := range calls {
				if !slices.ContainsFunc(res, func(c unavailableCall) bool { return c.name == name }) {
					res = append(res, unavailableCall{name: name, took: limit})
				}
			}
			return res
		}
	}
	return res
}

// checkUnavailable fails t unless c returned, within bound+slack, an
// error wrapping registry.ErrUnavailable that is a
// *registry.UnavailableError with the cause want and whose text names
// addr.
func checkUnavailable(t *testing.T, c unavailableCall, bound time.Duration, want registry.Cause, addr string) {
	t.Helper()
	limit := bound + frozenSlack(bound)
	if c.err == nil {
		if c.took >= limit {
			t.Errorf("%s(context.Background()) still blocked after %v; want an error within %v (+ slack)", c.name, limit, bound)
		} else {
			t.Errorf("%s(context.Background()) = nil after %v; want an error wrapping ErrUnavailable", c.name, c.took)
		}
		return
	}
	t.Logf("%s returned after %v: %v", c.name, c.took.Round(time.Millisecond), c.err)
	if c.took > limit {
		t.Errorf("%s(context.Background()) took %v; want at most %v (+ slack)", c.name, c.took, bound)
	}
	if c.got != nil {
		t.Errorf("%s(context.Background()) = %v, %v; want no result with the error", c.name, c.got, c.err)
	}
	if !errors.Is(c.err, registry.ErrUnavailable) {
		t.Errorf("%s(context.Background()) = %v; want an error wrapping ErrUnavailable", c.name, c.err)
	}
	var ue *registry.UnavailableError
	if !errors.As(c.err, &ue) {
		t.Errorf("%s(context.Background()) = %v (%T); want a *registry.UnavailableError in its chain", c.name, c.err, c.err)
	} else if ue.Cause != want {
		t.Errorf("%s(context.Background()) = %v; Cause = %d (%v), want %d (%v)", c.name, c.err, ue.Cause, ue.Cause, want, want)
	}
	if !strings.Contains(c.err.Error(), addr) {
		t.Errorf("%s(context.Background()) = %q; want it to name the registry %q", c.name, c.err, addr)
	}
}

// testFrozenRegistry: a registry that accepts connections and never
// answers. Every call without a deadline of its own returns within the
// backend's documented bound, with an error that says "no answer" and
// names the registry; a watch reports it within the bound; once the
// registry answers again nothing is lost: what was registered before is
// there, Register succeeds, and the watch that reported the freeze
// resumes and shows it.
func testFrozenRegistry(t *testing.T, s *suite) {
	f := s.h.(Freezer) // RunConformanceTests runs this case only for a Freezer
	bound, addr := f.FrozenBound(), f.Addr()
	r := s.open(t)
	svc := ServiceName(t)
	a, c, never := MakeInstance(svc, 1), MakeInstance(svc, 3), MakeInstance(svc, 9)
	s.mustRegister(t, r, a)
	w := s.watching(t, r, svc, a)

	restore := s.freeze(t, f)
	start := time.Now()
	var wg sync.WaitGroup
	var nextErr error
	var nextTook time.Duration
	wg.Go(func() {
		// The watch that saw a reports the freeze: an error, or at most
		// the set it already had, never a smaller one.
		ctx, cancel := context.WithTimeout(t.Context(), bound+frozenSlack(bound))
		defer cancel()
		for {
			got, err := w.Next(ctx)
			if err == nil && sameIDs(got, a) {
				continue
			}
			nextTook = time.Since(start)
			if err == nil {
				nextErr = errors.New("a set, " + strings.Join(ids(got), " ") + ", that is not the one it had")
			} else {
				nextErr = err
			}
			return
		}
	})
	// Never-registered instance for Deregister: idempotent, so what
	// becomes of it after the freeze is the same for every backend.
	calls := callsWithoutDeadline(r, svc, c, never, bound+frozenSlack(bound))
	wg.Wait()
	for _, call := range calls {
		checkUnavailable(t, call, bound, registry.CauseNoAnswer, addr)
	}
	switch {
	case errors.Is(nextErr, context.DeadlineExceeded) && !errors.Is(nextErr, registry.ErrUnavailable):
		t.Errorf("Next() during the freeze reported nothing within %v (+ slack)", bound)
	case !errors.Is(nextErr, registry.ErrUnavailable):
		t.Errorf("Next() during the freeze = %v after %v; want an error wrapping ErrUnavailable", nextErr, nextTook)
	default:
		t.Logf("Next() reported the freeze after %v: %v", nextTook.Round(time.Millisecond), nextErr)
	}
	if t.Failed() {
		return
	}

	restore()
	// The registration made before the freeze is still there; Register
	// works again (c may already be there, if the backend kept trying);
	// the watch resumes without a new Watch.
	s.eventuallyLookup(t, r, svc, "a, registered before the freeze", func(in []registry.Instance) bool {
		return sameIDs(in, a) || sameIDs(in, a, c)
	})
	s.mustRegister(t, r, c)
	s.nextUntil(t, w, "a and c after the freeze", func(in []registry.Instance) bool { return sameIDs(in, a, c) })
	s.eventuallyLookup(t, r, svc, "a and c after the freeze", func(in []registry.Instance) bool { return sameIDs(in, a, c) })
}

// testFrozenFirstNext: a watch started while the registry is frozen
// reports it from its first Next, within the bound, and shows the set
// once the registry answers again.
func testFrozenFirstNext(t *testing.T, s *suite) {
	f := s.h.(Freezer)
	bound := f.FrozenBound()
	r := s.open(t)
	svc := ServiceName(t)
	a := MakeInstance(svc, 1)
	s.mustRegister(t, r, a)
	s.eventuallyLookup(t, r, svc, "a", func(in []registry.Instance) bool { return sameIDs(in, a) })
	restore := s.freeze(t, f)
	w, err := r.Watch(s.ctx(t), svc)
	if err != nil {
		t.Fatalf("Watch(%q) while frozen = %v; want a watcher (Watch must not need the network)", svc, err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(t.Context(), bound+frozenSlack(bound))
	defer cancel()
	start := time.Now()
	got, err := w.Next(ctx)
	if !errors.Is(err, registry.ErrUnavailable) || got != nil {
		t.Fatalf("first Next() of a watch started while frozen = %v, %v after %v; want nil and an error wrapping ErrUnavailable within %v (+ slack)",
			ids(got), err, time.Since(start).Round(time.Millisecond), bound)
	}
	restore()
	s.nextUntil(t, w, "a once the registry answers", func(in []registry.Instance) bool { return sameIDs(in, a) })
}

// testRefusedRegistry: a registry whose connections are refused. Every
// call without a deadline says so, naming the registry, within the bound.
func testRefusedRegistry(t *testing.T, s *suite) {
	f := s.h.(Freezer)
	bound, addr := f.FrozenBound(), f.Addr()
	r := s.open(t)
	svc := ServiceName(t)
	a, c, never := MakeInstance(svc, 1), MakeInstance(svc, 3), MakeInstance(svc, 9)
	s.mustRegister(t, r, a)
	s.eventuallyLookup(t, r, svc, "a", func(in []registry.Instance) bool { return sameIDs(in, a) })
	restore := s.h.(Refuser).Refuse(t)
	var once sync.Once
	t.Cleanup(func() { once.Do(restore) })
	for _, call := range callsWithoutDeadline(r, svc, c, never, bound+frozenSlack(bound)) {
		checkUnavailable(t, call, bound, registry.CauseRefused, addr)
	}
	once.Do(restore)
	s.mustRegister(t, r, c)
	s.eventuallyLookup(t, r, svc, "a and c after the refusal", func(in []registry.Instance) bool { return sameIDs(in, a, c) })
}
