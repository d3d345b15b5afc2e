package scratch_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"

	"example.com/scratchbackend"
)

// harness cuts the suite's clients off with their memory client's
// outage switch; Freeze is the same switch with a cause that reads as
// no answer.
type harness struct {
	store   *memory.Store
	mu      sync.Mutex
	clients []*scratch.Registry
}

func (h *harness) NewRegistry(*testing.T) registry.Registry {
	r := scratch.New(h.store, slog.New(slog.DiscardHandler))
	h.mu.Lock()
	h.clients = append(h.clients, r)
	h.mu.Unlock()
	return r
}

func (h *harness) NewOutsideRegistry(*testing.T) registry.Registry {
	return scratch.New(h.store, slog.New(slog.DiscardHandler))
}

func (h *harness) Outage(*testing.T) func() { return h.outage(errors.New("partitioned")) }

func (h *harness) Freeze(*testing.T) func() { return h.outage(os.ErrDeadlineExceeded) }

func (h *harness) outage(cause error) func() {
	h.mu.Lock()
	cs := slices.Clone(h.clients)
	h.mu.Unlock()
	for _, r := range cs {
		r.Storage().SetOutage(cause)
	}
	return func() {
		for _, r := range cs {
			r.Storage().SetOutage(nil)
		}
	}
}

func (h *harness) FrozenBound() time.Duration { return 100 * time.Millisecond }

func (h *harness) Addr() string { return h.store.Name() }

func TestConformance(t *testing.T) {
	registrytest.RunConformanceTests(t, &harness{store: memory.Named(fmt.Sprintf("scratch-%d", time.Now().UnixNano()))})
}
