package driver

import (
	"context"
	"fmt"
	"sync"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Watchers tracks a backend Registry's open watchers, so that closing the
// Registry closes them (registry.Registry's Close contract). The zero
// value is ready to use.
type Watchers struct {
	mu     sync.Mutex
	open   map[*Watcher]struct{}
	closed bool
}

// Add tracks w. It reports false, and closes w, if CloseAll was already
// called: the backend then returns registry.ErrClosed from Watch.
func (ws *Watchers) Add(w *Watcher) bool {
	ws.mu.Lock()
	if ws.closed {
		ws.mu.Unlock()
		w.Close()
		return false
	}
	if ws.open == nil {
		ws.open = map[*Watcher]struct{}{}
	}
	ws.open[w] = struct{}{}
	ws.mu.Unlock()
	return true
}

// Remove stops tracking w; a backend's stop function calls it.
func (ws *Watchers) Remove(w *Watcher) {
	ws.mu.Lock()
	delete(ws.open, w)
	ws.mu.Unlock()
}

// CloseAll closes every tracked watcher and makes later Adds fail. It
// returns when their stop functions have returned.
func (ws *Watchers) CloseAll() {
	ws.mu.Lock()
	ws.closed = true
	open := ws.open
	ws.open = nil
	ws.mu.Unlock()
	for w := range open {
		w.Close()
	}
}

// Watch is the prologue every backend's Watch shares, so that a backend
// writes only what feeds the watcher. It
//
//   - validates service (registry.ValidateService; a backend with its own
//     rules, such as Kubernetes names, checks them first);
//   - returns an error wrapping registry.ErrClosed, named "<backend>:
//     watch <service>", once CloseAll was called;
//   - returns ctx's error if ctx is done (ctx is not used after Watch
//     returns: a registry's outage surfaces from Next, not from Watch);
//   - makes the Watcher with opts, calls start, and tracks the Watcher.
//
// start is called once, before Watch returns, with a context that is
// cancelled when the Watcher closes (by its Close or by CloseAll). It
// starts what feeds w (goroutines calling w.Set and w.Fail, or a
// subscription to a store) without waiting for the network, and returns
// a function, or nil, that Close calls after cancelling the context:
// it waits for those goroutines to return and undoes the subscription.
func (ws *Watchers) Watch(ctx context.Context, backend, service string, start func(ctx context.Context, w *Watcher) (stop func()), opts ...WatcherOption) (*Watcher, error) {
	if err := registry.ValidateService(service); err != nil {
		return nil, err
	}
	errClosed := fmt.Errorf("%s: watch %q: %w", backend, service, registry.ErrClosed)
	ws.mu.Lock()
	closed := ws.closed
	ws.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fctx, cancel := context.WithCancel(context.Background())
	var (
		w    *Watcher
		stop func()
	)
	w = NewWatcher(backend, service, func() {
		cancel()
		if stop != nil {
			stop()
		}
		ws.Remove(w)
	}, opts...)
	stop = start(fctx, w)
	if !ws.Add(w) { // closed meanwhile: Add closed w, which stopped start's work
		return nil, errClosed
	}
	return w, nil
}
