// Package registrytest is the conformance suite every registry backend
// runs against a real server of its kind: the success half of the watch
// contract and its error half, with outages made by the harness.
//
//	func TestConformance(t *testing.T) {
//		srv := testenv.StartConsul(t)
//		proxy := registrytest.NewProxy(t, srv.HTTPAddr())
//		registrytest.RunConformanceTests(t, harness{srv, proxy})
//	}
//
// Every test uses its own service names, so one server can be shared by
// the whole suite. The outage cases run one at a time.
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Harness gives the suite clients of the registry under test, and cuts
// them off from it.
type Harness interface {
	// NewRegistry returns a new client of the registry under test, one
	// that Outage cuts off. Two clients see each other's registrations.
	// The suite closes them.
	NewRegistry(t *testing.T) registry.Registry
	// NewOutsideRegistry returns a client of the same registry that
	// Outage does not cut off, for changes made during an outage.
	NewOutsideRegistry(t *testing.T) registry.Registry
	// Outage makes the registry unreachable from every client that
	// NewRegistry returned, as a down agent or a partition would,
	// without changing what the registry holds, until restore is called.
	// Backends on TCP can use a Proxy.
	Outage(t *testing.T) (restore func())
	// Every backend must say how it fails against a registry that
	// accepts connections and never answers: see Freezer.
	Freezer
}

// Staller is an optional interface for a Harness that can make the
// registry silent: Stall freezes it (a SIGSTOPped server or agent) so that
// connections stay open but nothing answers, until restore. A watch must
// still report the outage, within the backend's liveness bound, whatever
// its connection's state; the suite's timeout must exceed that bound.
// Without Stall the case is skipped.
type Staller interface {
	Stall(t *testing.T) (restore func())
}

// Freezer is the part of a Harness that freezes the registry for the
// clients NewRegistry returned: it accepts their connections and never
// answers (a Proxy's Freeze for backends on TCP, an outage switch for
// memory), until restore. The suite then checks that Register,
// Deregister, Lookup and Services, called with a context without a
// deadline, each return within FrozenBound with an error wrapping
// registry.ErrUnavailable that names Addr and says why; that a watch
// reports the outage within the bound; and that nothing is lost once the
// registry answers again (what was registered before the freeze is
// there, Register succeeds, and the watch resumes without a new Watch).
// The suite allows one second and half the bound beyond FrozenBound.
// See also Refuser.
type Freezer interface {
	Freeze(t *testing.T) (restore func())
	// FrozenBound is the longest the backend documents for a call with
	// no deadline of its own against a registry that does not answer.
	FrozenBound() time.Duration
	// Addr is how the backend's errors name the registry that
	// NewRegistry's clients use, secrets redacted, such as
	// "consul://127.0.0.1:41234".
	Addr() string
}

// NewFrozenListener returns the address of a loopback listener that
// accepts connections and never answers, for tests of what a client
// says about a frozen registry. It is closed when t ends.
func NewFrozenListener(t testing.TB) string {
	t.Helper()
	p := NewProxy(t, "127.0.0.1:0") // frozen before any dial; never dials once closed
	p.Freeze()
	return p.Addr()
}

// Option configures RunConformanceTests.
type Option func(*suite)

// WithTimeout bounds how long the suite waits for the registry to
// converge, and for an outage to be reported; the default is 20s.
func WithTimeout(d time.Duration) Option { return func(s *suite) { s.timeout = d } }

// RequireOptional makes the cases for optional interfaces fail, rather
// than skip, when the backend lacks the interface: ServicesListed
// (registry.ServiceLister on the Registry) and WatcherIndex
// (registry.IndexedWatcher on its watchers, with an index). A backend
// written elsewhere may lack them, as its registry may have no list of
// services or no index; every backend in this repository runs the suite
// with RequireOptional, so that none of them loses one unnoticed.
func RequireOptional() Option { return func(s *suite) { s.requireOptional = true } }

type suite struct {
	h               Harness
	timeout         time.Duration
	requireOptional bool
}

// lacks skips the test, saying which optional part the backend lacks and
// why that is allowed, or fails it under RequireOptional.
func (s *suite) lacks(t *testing.T, format string, args ...any) {
	t.Helper()
	if s.requireOptional {
		t.Fatalf(format+"; required by RequireOptional", args...)
	}
	t.Skipf(format, args...)
}

// RunConformanceTests runs the suite.
func RunConformanceTests(t *testing.T, h Harness, opts ...Option) {
	s := &suite{h: h, timeout: 20 * time.Second}
	for _, o := range opts {
		o(s)
	}
	tests := []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"RegisterLookupDeregister", testRegisterLookupDeregister},
		{"WatchFollowsChanges", testWatchFollowsChanges},
		{"ReRegisterUpdates", testReRegisterUpdates},
		{"EmptyServiceIsEmptySet", testEmptyService},
		{"ServicesAreIsolated", testServicesIsolated},
		{"DeregisterIsIdempotent", testDeregisterIdempotent},
		{"ConcurrentWatchersConverge", testConcurrentWatchers},
		{"NoUpdateWithoutChange", testNoUpdateWithoutChange},
		{"CloseUnblocksNext", testCloseUnblocksNext},
		{"RegistryCloseClosesWatchers", testRegistryCloseClosesWatchers},
		{"NextHonoursContext", testNextHonoursContext},
		{"MetadataRoundTrips", testMetadataRoundTrips},
		{"RegistrationStamp", testRegistrationStamp},
		{"InvalidInstancesRejected", testInvalidRejected},
		{"ThousandInstances", testThousandInstances},
		{"ServicesListed", testServicesListed},
		{"WatcherIndex", testWatcherIndex},
		// The error half, with outages.
		{"OutageIsErrorsNeverEmpty", testOutageErrorsNeverEmpty},
		{"RecoveryResendsUnchangedSet", testRecoveryResends},
		{"FirstNextDuringOutageFails", testFirstNextDuringOutage},
		{"CloseDuringBlockedNextInOutage", testCloseDuringOutage},
		{"ChangeDuringOutageSeenAfter", testChangeDuringOutage},
	}
	if _, ok := h.(Staller); ok {
		// Only a harness that can freeze its registry can show this;
		// the others do not run it rather than skip it.
		tests = append(tests, struct {
			name string
			fn   func(*testing.T, *suite)
		}{"SilentRegistryReported", testSilentRegistry})
	}
	tests = append(tests, []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"FrozenRegistryBounded", testFrozenRegistry},
		{"FrozenFirstNextFails", testFrozenFirstNext},
	}...)
	if _, ok := h.(Refuser); ok {
		// Only a harness that can make its registry refuse connections
		// can show this; the others do not run it rather than skip it.
		tests = append(tests, struct {
			name string
			fn   func(*testing.T, *suite)
		}{"RefusedRegistrySaysSo", testRefusedRegistry})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, s) })
	}
}

func (s *suite) open(t *testing.T) registry.Registry {
	t.Helper()
	r := s.h.NewRegistry(t)
	t.Cleanup(func() { r.Close() })
	return r
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), s.timeout)
	t.Cleanup(cancel)
	return ctx
}

// ServiceName returns a service name unique to this test run.
func ServiceName(t *testing.T) string {
	base := strings.Map(func(r rune) rune {
		if ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			return r
		}
		return '-'
	}, t.Name())
	if len(base) > 80 {
		base = base[len(base)-80:]
	}
	return fmt.Sprintf("t%x-%s", rand.Uint32(), strings.Trim(base, "-"))
}

// MakeInstance returns a valid instance of service with a unique ID.
func MakeInstance(service string, n int) registry.Instance {
	return registry.Instance{
		ID:      fmt.Sprintf("%s-i%04d", service, n),
		Service: service,
		Address: fmt.Sprintf("127.0.0.%d:%d", 1+n/60000, 1024+n%60000),
		Version: "v1",
	}
}

// IDs returns the IDs of insts, in their order, for test messages.
func IDs(insts []registry.Instance) []string { return ids(insts) }

// SameIDs reports whether got holds exactly the instances of want, by
// ID, in any order.
func SameIDs(got []registry.Instance, want ...registry.Instance) bool { return sameIDs(got, want...) }

func ids(insts []registry.Instance) []string {
	out := make([]string, len(insts))
	for i, in := range insts {
		out[i] = in.ID
	}
	return out
}

func sameIDs(got []registry.Instance, want ...registry.Instance) bool {
	if len(got) != len(want) {
		return false
	}
	w := map[string]bool{}
	for _, in := range want {
		w[in.ID] = true
	}
	for _, in := range got {
		if !w[in.ID] {
			return false
		}
	}
	return true
}

// Eventually polls Lookup until cond holds or s.timeout passes.
func (s *suite) eventuallyLookup(t *testing.T, r registry.Discovery, service string, what string, cond func([]registry.Instance) bool) []registry.Instance {
	t.Helper()
	ctx := s.ctx(t)
	var got []registry.Instance
	var err error
	if !wait.Until(s.timeout, func() bool { got, err = r.Lookup(ctx, service); return err == nil && cond(got) }) {
		t.Fatalf("Lookup(%q) never showed %s within %v; last = %v, %v", service, what, s.timeout, ids(got), err)
	}
	return got
}

// nextUntil calls Next until cond holds or s.timeout passes.
func (s *suite) nextUntil(t *testing.T, w registry.Watcher, what string, cond func([]registry.Instance) bool) []registry.Instance {
	t.Helper()
	ctx := s.ctx(t)
	var last []registry.Instance
	for {
		got, err := w.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("Next never showed %s within %v; last = %v", what, s.timeout, ids(last))
			}
			// Transient errors are allowed by the contract; keep going.
			continue
		}
		if cond(got) {
			return got
		}
		last = got
	}
}

func (s *suite) mustRegister(t *testing.T, r registry.Registrar, inst registry.Instance) {
	t.Helper()
	if err := r.Register(s.ctx(t), inst); err != nil {
		t.Fatalf("Register(%v) = %v, want nil", inst, err)
	}
}

func (s *suite) mustDeregister(t *testing.T, r registry.Registrar, inst registry.Instance) {
	t.Helper()
	if err := r.Deregister(s.ctx(t), inst); err != nil {
		t.Fatalf("Deregister(%v) = %v, want nil", inst, err)
	}
}

func testRegisterLookupDeregister(t *testing.T, s *suite) {
	r := s.open(t)
	svc := ServiceName(t)
	a, b := MakeInstance(svc, 1), MakeInstance(svc, 2)
	s.mustRegister(t, r, a)
	s.mustRegister(t, r, b)
	got := s.eventuallyLookup(t, r, svc, "both instances", func(in []registry.Instance) bool { return sameIDs(in, a, b) })
	for i := 1; i < len(got); i++ {
		if got[i-1].ID >= got[i].ID {
			t.Errorf("Lookup(%q) = %v, want sorted by ID", svc, ids(got))
		}
	}
	s.mustDeregister(t, r, a)
	s.eventuallyLookup(t, r, svc, "only b", func(in []registry.Instance) bool { return sameIDs(in, b) })
	s.mustDeregister(t, r, b)
	s.eventuallyLookup(t, r, svc, "no instance", func(in []registry.Instance) bool { return len(in) == 0 })
}

func testWatchFollowsChanges(t *testing.T, s *suite) {
	server, client := s.open(t), s.open(t)
	svc := ServiceName(t)
	w, err := client.Watch(s.ctx(t), svc)
	if err != nil {
		t.Fatalf("Watch(%q) = %v", svc, err)
	}
	defer w.Close()
	s.nextUntil(t, w, "the empty set", func(in []registry.Instance) bool { return len(in) == 0 })
	a, b := MakeInstance(svc, 1), MakeInstance(svc, 2)
	s.mustRegister(t, server, a)
	s.nextUntil(t, w, "a", func(in []registry.Instance) bool { return sameIDs(in, a) })
	s.mustRegister(t, server, b)
	s.nextUntil(t, w, "a and b", func(in []registry.Instance) bool { return sameIDs(in, a, b) })
	s.mustDeregister(t, server, a)
	s.nextUntil(t, w, "b", func(in []registry.Instance) bool { return sameIDs(in, b) })
	s.mustDeregister(t, server, b)
	s.nextUntil(t, w, "the empty set again", func(in []registry.Instance) bool { return len(in) == 0 })
}

func testReRegisterUpdates(t *testing.T, s *suite) {
	r := s.open(t)
	svc := ServiceName(t)
	a := MakeInstance(svc, 1)
	s.mustRegister(t, r, a)
	w := s.watching(t, r, svc, a)
	a2 := a.Clone()
	a2.Version, a2.Weight, a2.Address = "v2", 7, "127.0.0.1:2999"
	s.mustRegister(t, r, a2)
	got := s.nextUntil(t, w, "the updated a", func(in []registry.Instance) bool {
		return len(in) == 1 && in[0].Version == "v2"
	})
	if !got[0].Equal(a2) {
		t.Errorf("after re-Register, Next() = %+v, want %+v", got[0], a2)
	}
	got = s.eventuallyLookup(t, r, svc, "the updated a", func(in []registry.Instance) bool { return len(in) == 1 && in[0].Version == "v2" })
	if !got[0].Equal(a2) {
		t.Errorf("after re-Register, Lookup() = %+v, want %+v", got[0], a2)
	}
}

func testEmptyService(t *testing.T, s *suite) {
	r := s.open(t)
	svc := ServiceName(t)
	got, err := r.Lookup(s.ctx(t), svc)
	if err != nil || len(got) != 0 {
		t.Fatalf("Lookup(%q) of an unknown service = %v, %v; want an empty set and nil", svc, ids(got), err)
	}
	w, err := r.Watch(s.ctx(t), svc)
	if err != nil {
		t.Fatalf("Watch(%q) = %v", svc, err)
	}
	defer w.Close()
	got, err = w.Next(s.ctx(t))
	if err != nil || len(got) != 0 {
		t.Fatalf("first Next() of an unknown service = %v, %v; want an empty set and nil", ids(got), err)
	}
}

func testServicesIsolated(t *testing.T, s *suite) {
	r := s.open(t)
	svc := ServiceName(t)
	// A name that is a prefix of the other catches prefix-scan bugs.
	other := svc + "-x"
	a, b := MakeInstance(svc, 1), MakeInstance(other, 2)
	s.mustRegister(t, r, a)
	s.mustRegister(t, r, b)
	s.eventuallyLookup(t, r, other, "b", func(in []registry.Instance) bool { return sameIDs(in, b) })
	got := s.eventuallyLookup(t, r, svc, "a", func(in []registry.Instance) bool { return len(in) > 0 })
	if !sameIDs(got, a) {
		t.Fatalf("Lookup(%q) = %v, want only %s (no instance of %q)", svc, ids(got), a.ID, other)
	}
}

func testDeregisterIdempotent(t *testing.T, s *suite) {
	r := s.open(t)
	svc := ServiceName(t)
	a := MakeInstance(svc, 1)
	s.mustDeregister(t, r, a) // never registered
	s.mustRegister(t, r, a)
	s.mustDeregister(t, r, a)
	s.mustDeregister(t, r, a)
	s.eventuallyLookup(t, r, svc, "no instance", func(in []registry.Instance) bool { return len(in) == 0 })
}

func testConcurrentWatchers(t *testing.T, s *suite) {
	const watchers, instances = 16, 10
	server := s.open(t)
	svc := ServiceName(t)
	want := make([]registry.Instance, instances)
	for i := range want {
		want[i] = MakeInstance(svc, i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, watchers)
	for n := range watchers {
		client := server
		if n%2 == 0 {
			client = s.open(t)
		}
		w, err := client.Watch(s.ctx(t), svc)
		if err != nil {
			t.Fatalf("Watch = %v", err)
		}
		defer w.Close()
		wg.Go(func() {
			ctx := s.ctx(t)
			var last []registry.Instance
			for {
				got, err := w.Next(ctx)
				if err == nil {
					last = got
					if sameIDs(got, want...) {
						return
					}
				}
				if ctx.Err() != nil {
					errs <- fmt.Errorf("watcher %d: last = %v, want %d instances", n, ids(last), instances)
					return
				}
			}
		})
	}
	var reg sync.WaitGroup
	for _, inst := range want {
		reg.Go(func() {
			if err := server.Register(s.ctx(t), inst); err != nil {
				errs <- fmt.Errorf("Register(%v) = %v", inst, err)
			}
		})
	}
	reg.Wait()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testNoUpdateWithoutChange(t *testing.T, s *suite) {
	r := s.open(t)
	svc := ServiceName(t)
	a := MakeInstance(svc, 1)
	s.mustRegister(t, r, a)
	w := s.watching(t, r, svc, a)
	// Changes elsewhere and an identical re-registration must not wake it.
	s.mustRegister(t, r, MakeInstance(svc+"-other", 2))
	s.mustRegister(t, r, a)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if got, err := w.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next() with nothing changed = %v, %v; want to block until the deadline", ids(got), err)
	}
}

func testCloseUnblocksNext(t *testing.T, s *suite) {
	r := s.open(t)
	svc := ServiceName(t)
	w, err := r.Watch(s.ctx(t), svc)
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	if _, err := w.Next(s.ctx(t)); err != nil {
		t.Fatalf("first Next() = %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := w.Next(context.Background())
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // let Next block; correctness does not depend on it
	if err := w.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, registry.ErrClosed) {
			t.Fatalf("pending Next() after Close = %v, want ErrClosed", err)
		}
	case <-time.After(s.timeout):
		t.Fatalf("pending Next() still blocked %v after Close", s.timeout)
	}
	if _, err := w.Next(s.ctx(t)); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Next() after Close = %v, want ErrClosed", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close() = %v, want nil", err)
	}
}

func testRegistryCloseClosesWatchers(t *testing.T, s *suite) {
	r := s.h.NewRegistry(t)
	w, err := r.Watch(s.ctx(t), ServiceName(t))
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	defer w.Close()
	if _, err := w.Next(s.ctx(t)); err != nil {
		t.Fatalf("first Next() = %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Registry.Close() = %v", err)
	}
	if _, err := w.Next(s.ctx(t)); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Next() after Registry.Close = %v, want ErrClosed", err)
	}
	if _, err := r.Watch(s.ctx(t), ServiceName(t)); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Watch() after Registry.Close = %v, want ErrClosed", err)
	}
}

func testNextHonoursContext(t *testing.T, s *suite) {
	r := s.open(t)
	svc := ServiceName(t)
	w, err := r.Watch(s.ctx(t), svc)
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	defer w.Close()
	if _, err := w.Next(s.ctx(t)); err != nil {
		t.Fatalf("first Next() = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := w.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next(cancelled ctx) = %v, want context.Canceled", err)
	}
	// The watcher is still usable.
	a := MakeInstance(svc, 1)
	s.mustRegister(t, r, a)
	s.nextUntil(t, w, "a after a cancelled Next", func(in []registry.Instance) bool { return sameIDs(in, a) })
}

func testMetadataRoundTrips(t *testing.T, s *suite) {
	r := s.open(t)
	svc := ServiceName(t)
	want := registry.Instance{
		ID:      "id-with.dots_and-dashes:9",
		Service: svc,
		Address: "[::1]:50051",
		Version: "v2.3.4-rc.1+build 7",
		Zone:    "eu-west-1a",
		Weight:  250,
		Tags:    []string{"canary", "z-last", "a-first", "ünïcødé tag"},
		Metadata: map[string]string{
			"owner":     "team-äöü",
			"empty":     "",
			"json-like": `{"a":[1,2],"b":"c"}`,
			"spaces":    "  leading and trailing  ",
			"Case_Key":  "MixedCase",
			"long":      strings.Repeat("x", registry.MaxMetaValueLen),
		},
	}
	s.mustRegister(t, r, want)
	got := s.eventuallyLookup(t, r, svc, "the instance", func(in []registry.Instance) bool { return len(in) == 1 })
	if !got[0].Equal(want) {
		t.Fatalf("Lookup round trip:\n got = %#v\nwant = %#v", got[0], want)
	}
	w, err := r.Watch(s.ctx(t), svc)
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	defer w.Close()
	got = s.nextUntil(t, w, "the instance", func(in []registry.Instance) bool { return len(in) == 1 })
	if !got[0].Equal(want) {
		t.Fatalf("Watch round trip:\n got = %#v\nwant = %#v", got[0], want)
	}
	// Returned values are copies: changing them changes nothing stored.
	got[0].Metadata["owner"] = "mallory"
	got[0].Tags[0] = "mallory"
	again := s.eventuallyLookup(t, r, svc, "the instance", func(in []registry.Instance) bool { return len(in) == 1 })
	if !again[0].Equal(want) {
		t.Fatalf("changing a returned Instance changed the registry: got %#v", again[0])
	}
}

// testRegistrationStamp: Register stamps the instance with the time of
// the call; an identical Register keeps the stamp and a changing one
// renews it; the stamp never shows up in Metadata.
func testRegistrationStamp(t *testing.T, s *suite) {
	r := s.open(t)
	svc := ServiceName(t)
	a := MakeInstance(svc, 1)
	a.Registered = time.Unix(1, 0) // Register ignores the caller's value
	before := time.Now()
	s.mustRegister(t, r, a)
	after := time.Now()
	got := s.eventuallyLookup(t, r, svc, "a", func(in []registry.Instance) bool { return sameIDs(in, a) })
	first := got[0].Registered
	// The Registrar stamps with this process's clock; a second of slack
	// covers rounding in the stored form.
	if first.Before(before.Add(-time.Second)) || first.After(after.Add(time.Second)) {
		t.Fatalf("Registered = %v, want between %v and %v", first, before, after)
	}
	for k := range got[0].Metadata {
		if strings.HasPrefix(strings.ToLower(k), registry.ReservedMetaPrefix) {
			t.Errorf("Metadata has the reserved key %q", k)
		}
	}
	w, err := r.Watch(s.ctx(t), svc)
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	defer w.Close()
	got = s.nextUntil(t, w, "a", func(in []registry.Instance) bool { return sameIDs(in, a) })
	if !got[0].Registered.Equal(first) {
		t.Errorf("Watch: Registered = %v, Lookup said %v", got[0].Registered, first)
	}

	s.mustRegister(t, r, a)
	got = s.eventuallyLookup(t, r, svc, "a", func(in []registry.Instance) bool { return sameIDs(in, a) })
	if !got[0].Registered.Equal(first) {
		t.Errorf("after an identical Register, Registered = %v, want the original %v", got[0].Registered, first)
	}

	a2 := a.Clone()
	a2.Weight = 9
	s.mustRegister(t, r, a2)
	got = s.nextUntil(t, w, "a with weight 9", func(in []registry.Instance) bool { return len(in) == 1 && in[0].Weight == 9 })
	if !got[0].Registered.After(first) {
		t.Errorf("after a changing Register, Registered = %v, want later than %v", got[0].Registered, first)
	}
}

func testInvalidRejected(t *testing.T, s *suite) {
	r := s.open(t)
	svc := ServiceName(t)
	good := MakeInstance(svc, 1)
	mutate := func(f func(*registry.Instance)) registry.Instance {
		i := good.Clone()
		f(&i)
		return i
	}
	bad := map[string]registry.Instance{
		"empty service":   mutate(func(i *registry.Instance) { i.Service = "" }),
		"empty ID":        mutate(func(i *registry.Instance) { i.ID = "" }),
		"no port":         mutate(func(i *registry.Instance) { i.Address = "127.0.0.1" }),
		"port 0":          mutate(func(i *registry.Instance) { i.Address = "127.0.0.1:0" }),
		"unspecified":     mutate(func(i *registry.Instance) { i.Address = "0.0.0.0:80" }),
		"negative weight": mutate(func(i *registry.Instance) { i.Weight = -1 }),
		"huge weight":     mutate(func(i *registry.Instance) { i.Weight = registry.MaxWeight + 1 }),
		"bad meta key":    mutate(func(i *registry.Instance) { i.Metadata = map[string]string{"a.b": "x"} }),
		"non-UTF-8 value": mutate(func(i *registry.Instance) { i.Metadata = map[string]string{"k": "\xff"} }),
		"oversized value": mutate(func(i *registry.Instance) {
			i.Metadata = map[string]string{"k": strings.Repeat("x", registry.MaxMetaValueLen+1)}
		}),
	}
	for name, inst := range bad {
		if err := r.Register(s.ctx(t), inst); !errors.Is(err, registry.ErrInvalidInstance) {
			t.Errorf("%s: Register(%+v) = %v, want ErrInvalidInstance", name, inst, err)
		}
	}
	got, err := r.Lookup(s.ctx(t), svc)
	if err != nil || len(got) != 0 {
		t.Fatalf("after rejected registrations, Lookup(%q) = %v, %v; want empty", svc, ids(got), err)
	}
}

func testThousandInstances(t *testing.T, s *suite) {
	const n = 1000
	r := s.open(t)
	svc := ServiceName(t)
	w, err := r.Watch(s.ctx(t), svc)
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	defer w.Close()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var failed sync.Once
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := r.Register(s.ctx(t), MakeInstance(svc, i)); err != nil {
				failed.Do(func() { t.Errorf("Register #%d = %v", i, err) })
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	s.eventuallyLookup(t, r, svc, "1000 instances", func(in []registry.Instance) bool { return len(in) == n })
	got := s.nextUntil(t, w, "1000 instances", func(in []registry.Instance) bool { return len(in) == n })
	seen := map[string]bool{}
	for _, in := range got {
		if seen[in.ID] {
			t.Fatalf("Next() returned %s twice", in.ID)
		}
		seen[in.ID] = true
	}
}

// testServicesListed checks registry.ServiceLister: a service is listed
// while it has instances, and not after. A backend whose registry cannot
// list its services (DNS SRV records, say) may lack the interface, which
// is optional (tools such as the wayfinder command say so when it is
// missing): the case is then skipped, unless RequireOptional.
func testServicesListed(t *testing.T, s *suite) {
	r := s.open(t)
	lister, ok := r.(registry.ServiceLister)
	if !ok {
		s.lacks(t, "%T does not implement registry.ServiceLister (optional: its registry may have no list of services)", r)
	}
	svc := ServiceName(t)
	a := MakeInstance(svc, 1)
	s.mustRegister(t, r, a)
	listed := func(want bool) {
		t.Helper()
		ctx := s.ctx(t)
		var names []string
		var err error
		if !wait.Until(s.timeout, func() bool {
			names, err = lister.Services(ctx)
			return err == nil && slices.Contains(names, svc) == want && slices.IsSorted(names)
		}) {
			t.Fatalf("Services() = %v, %v; want %q listed = %v, sorted", names, err, svc, want)
		}
	}
	listed(true)
	s.mustDeregister(t, r, a)
	listed(false)
}

// testWatcherIndex checks registry.IndexedWatcher: no index before the
// first set, a non-empty one after, and a new one with every changed set;
// Index is read all along from another goroutine, as a debug page would,
// for the race detector to check. A backend whose registry keeps no
// index may have watchers without the interface, or (built on
// driver.Watcher) with an empty Index: the case is then skipped, unless
// RequireOptional.
func testWatcherIndex(t *testing.T, s *suite) {
	server, client := s.open(t), s.open(t)
	svc := ServiceName(t)
	w, err := client.Watch(s.ctx(t), svc)
	if err != nil {
		t.Fatalf("Watch(%q) = %v", svc, err)
	}
	defer w.Close()
	iw, ok := w.(registry.IndexedWatcher)
	if !ok {
		s.lacks(t, "%T does not implement registry.IndexedWatcher (optional: its registry may keep no index)", w)
	}
	if idx := iw.Index(); idx != "" {
		t.Errorf("Index() before the first Next = %q, want \"\"", idx)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				_ = iw.Index()
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()

	var prev, prevWhat string
	step := func(what string, cond func([]registry.Instance) bool) string {
		t.Helper()
		s.nextUntil(t, w, what, cond)
		idx := iw.Index()
		if idx == "" && prevWhat == "" {
			s.lacks(t, "Index() after Next returned %s = \"\": the backend gives no index (optional: its registry may keep none)", what)
		}
		if idx == "" {
			t.Fatalf("Index() after Next returned %s = \"\", want the registry's index", what)
		}
		if idx == prev {
			t.Errorf("Index() = %q for %s, the same as for %s; want a new index for a changed set", idx, what, prevWhat)
		}
		prev, prevWhat = idx, what
		return idx
	}
	step("the empty set", func(in []registry.Instance) bool { return len(in) == 0 })
	a := MakeInstance(svc, 1)
	s.mustRegister(t, server, a)
	step("a", func(in []registry.Instance) bool { return sameIDs(in, a) })
	s.mustDeregister(t, server, a)
	last := step("the empty set again", func(in []registry.Instance) bool { return len(in) == 0 })
	w.Close()
	if idx := iw.Index(); idx != last {
		t.Errorf("Index() after Close = %q, want the last set's %q", idx, last)
	}
}
