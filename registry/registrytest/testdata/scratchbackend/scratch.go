// Package scratch is a registry backend written outside Wayfinder's
// repository with its exported packages only: registry for the types,
// registry/driver for the watch contract and field reports, and
// registry/memory's Store as its storage. registrytest's
// TestScratchBackend builds it in a module of its own and runs the
// conformance suite on it, so that a backend needing anything internal
// fails to build there.
package scratch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
)

// Registry keeps its instances in a memory.Store, through a client of
// its own whose outage switch stands for the network.
type Registry struct {
	store    *memory.Registry
	watchers driver.Watchers
	problems *driver.FieldReporter
}

var (
	_ registry.Registry             = (*Registry)(nil)
	_ registry.ServiceLister        = (*Registry)(nil)
	_ registry.FieldProblemReporter = (*Registry)(nil)
)

// New returns a client of s.
func New(s *memory.Store, log *slog.Logger) *Registry {
	return &Registry{store: s.Open(), problems: driver.NewFieldReporter("scratch", log)}
}

// Storage returns the memory client under r, whose SetOutage cuts r off.
func (r *Registry) Storage() *memory.Registry { return r.store }

func (r *Registry) Register(ctx context.Context, inst registry.Instance) error {
	return r.store.Register(ctx, inst)
}

func (r *Registry) Deregister(ctx context.Context, inst registry.Instance) error {
	return r.store.Deregister(ctx, inst)
}

// Lookup reads the store and passes each instance through driver.Sanitize,
// as a backend decoding foreign data does.
func (r *Registry) Lookup(ctx context.Context, service string) ([]registry.Instance, error) {
	insts, err := r.store.Lookup(ctx, service)
	if err != nil {
		return nil, err
	}
	out := insts[:0]
	for _, inst := range insts {
		inst, problems, err := driver.Sanitize(inst, func(f string) string { return f })
		r.problems.Observe(service, inst.ID, problems)
		if err == nil {
			out = append(out, inst)
		}
	}
	return driver.Normalize(out), nil
}

func (r *Registry) Services(ctx context.Context) ([]string, error) { return r.store.Services(ctx) }

func (r *Registry) FieldProblems(service string) []registry.FieldProblem {
	return r.problems.FieldProblems(service)
}

// Watch follows the store with a watcher of its own, relayed to a
// driver.Watcher by one goroutine, which keeps the contract.
func (r *Registry) Watch(ctx context.Context, service string) (registry.Watcher, error) {
	return r.watchers.Watch(ctx, "scratch", service, func(ctx context.Context, w *driver.Watcher) func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.relay(ctx, service, w)
		}()
		return func() { <-done }
	}, driver.ReportTo(r.problems))
}

func (r *Registry) relay(ctx context.Context, service string, w *driver.Watcher) {
	in, err := r.store.Watch(ctx, service)
	if err != nil {
		w.Fail(fmt.Errorf("scratch: watch %q: %w", service, err))
		return
	}
	defer in.Close()
	for {
		set, err := in.Next(ctx)
		switch {
		case ctx.Err() != nil || errors.Is(err, registry.ErrClosed):
			return
		case err != nil:
			w.Fail(err)
		default:
			index := ""
			if iw, ok := in.(registry.IndexedWatcher); ok {
				index = iw.Index()
			}
			w.Set(set, index)
		}
	}
}

// Close closes r's watchers and its memory client.
func (r *Registry) Close() error {
	r.watchers.CloseAll()
	return r.store.Close()
}
