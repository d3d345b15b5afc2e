package driver

import "sync"

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
