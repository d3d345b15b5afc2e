package memory_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

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

func (h *harness) Outage(*testing.T) func() {
	h.mu.Lock()
	cs := slices.Clone(h.clients)
	h.mu.Unlock()
	for _, r := range cs {
		r.SetOutage(errors.New("partitioned"))
	}
	return func() {
		for _, r := range cs {
			r.SetOutage(nil)
		}
	}
}

func TestConformance(t *testing.T) {
	registrytest.RunConformanceTests(t, &harness{store: memory.NewStore()})
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
