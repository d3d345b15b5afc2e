package memory_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness cuts the suite's clients off with their own failure switch,
// so that a client outside the outage can still change the store.
type harness struct {
	store   *memory.Store
	mu      sync.Mutex
	clients []*memory.Registry
}

func (h *harness) NewRegistry(*testing.T) registry.Registry {
	r := h.store.Open()
	h.mu.Lock()
	h.clients = append(h.clients, r)
	h.mu.Unlock()
	return r
}

func (h *harness) NewOutsideRegistry(*testing.T) registry.Registry { return h.store.Open() }

func (h *harness) Outage(*testing.T) func() { return h.outage(errors.New("partitioned")) }

// outage cuts off every client NewRegistry returned with cause.
func (h *harness) outage(cause error) func() {
	h.mu.Lock()
	cs := slices.Clone(h.clients)
	h.mu.Unlock()
	for _, r := range cs {
		r.SetOutage(cause)
	}
	return func() {
		for _, r := range cs {
			r.SetOutage(nil)
		}
	}
}

// Freeze is the outage switch with a cause that reads as no answer
// (registrytest.Freezer): the embedded store reports it at once.
func (h *harness) Freeze(*testing.T) func() { return h.outage(os.ErrDeadlineExceeded) }

// Refuse is the outage switch with a refused connection as its cause
// (registrytest.Refuser).
func (h *harness) Refuse(*testing.T) func() { return h.outage(syscall.ECONNREFUSED) }

// FrozenBound: memory never waits, so any small bound holds.
func (h *harness) FrozenBound() time.Duration { return 100 * time.Millisecond }

func (h *harness) Addr() string { return h.store.Name() }

func TestConformance(t *testing.T) {
	name := fmt.Sprintf("conformance-%d", time.Now().UnixNano())
	registrytest.RunConformanceTests(t, &harness{store: memory.Named(name)}, registrytest.RequireOptional())
}

// TestOutageErrorNamesStoreAndCause: an outage's errors are
// *registry.UnavailableError values that name the store by its URL, with
// the cause read from what SetOutage was given.
func TestOutageErrorNamesStoreAndCause(t *testing.T) {
	for _, tc := range []struct {
		store *memory.Store
		name  string
		cause error
		want  registry.Cause
	}{
		{memory.Default(), "mem://", os.ErrDeadlineExceeded, registry.CauseNoAnswer},
		{memory.Named("outage-names"), "mem://outage-names", syscall.ECONNREFUSED, registry.CauseRefused},
		{memory.NewStore(), memory.PrivateName, errors.New("link down"), registry.CauseUnknown},
	} {
		r := tc.store.Open()
		tc.store.SetOutage(tc.cause)
		_, err := r.Lookup(t.Context(), "hello")
		tc.store.SetOutage(nil)
		r.Close()
		var ue *registry.UnavailableError
		if !errors.As(err, &ue) || ue.Cause != tc.want || ue.Registry != tc.name || !errors.Is(err, tc.cause) {
			t.Errorf("Lookup during SetOutage(%v) on %s = %v; want a *registry.UnavailableError naming %q with Cause %v, wrapping the cause", tc.cause, tc.name, err, tc.name, tc.want)
			continue
		}
		if want := tc.name + `: lookup "hello": `; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Lookup during SetOutage(%v) = %q; want it to start with %q", tc.cause, err, want)
		}
	}
}

func TestOutageIsDistinctFromEmpty(t *testing.T) {
	store := memory.NewStore()
	r := store.Open()
	defer r.Close()
	ctx := t.Context()
	inst := registry.Instance{ID: "a", Service: "hello", Address: "127.0.0.1:1"}
	if err := r.Register(ctx, inst); err != nil {
		t.Fatal(err)
	}
	w, err := r.Watch(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got, err := w.Next(ctx); err != nil || len(got) != 1 {
		t.Fatalf("Next() = %v, %v; want 1 instance", got, err)
	}
	store.SetOutage(errors.New("link down"))
	if got, err := w.Next(ctx); !errors.Is(err, registry.ErrUnavailable) || got != nil {
		t.Fatalf("Next() during an outage = %v, %v; want nil, ErrUnavailable", got, err)
	}
	if got, err := r.Lookup(ctx, "hello"); !errors.Is(err, registry.ErrUnavailable) || got != nil {
		t.Fatalf("Lookup() during an outage = %v, %v; want nil, ErrUnavailable", got, err)
	}
	if err := r.Register(ctx, inst); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Register() during an outage = %v, want ErrUnavailable", err)
	}
	store.SetOutage(nil)
	// The unchanged set is returned after the error, so the caller sees the recovery.
	if got, err := w.Next(ctx); err != nil || len(got) != 1 {
		t.Fatalf("Next() after the outage = %v, %v; want the unchanged set", got, err)
	}
	if err := r.Deregister(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if got, err := w.Next(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Next() after the last deregistration = %v, %v; want an empty set and nil", got, err)
	}
}

func Example() {
	ctx := context.Background()
	reg, err := registry.Open(ctx, "mem://example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Close()
	_ = reg.Register(ctx, registry.Instance{ID: "hello-1", Service: "hello", Address: "127.0.0.1:50051", Zone: "z1"})
	w, _ := reg.Watch(ctx, "hello")
	defer w.Close()
	insts, _ := w.Next(ctx)
	fmt.Println(insts)
	_ = reg.Deregister(ctx, insts[0])
	insts, _ = w.Next(ctx)
	fmt.Println(insts)
	// Output:
	// [hello/hello-1@127.0.0.1:50051]
	// []
}
