package polling

import (
	"context"
	"sync"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// New returns d, but watched by asking it every every. It wraps the same
// registry client as the watch it is compared with, so the two differ
// only in polling versus watching.
func New(d registry.Discovery, every time.Duration) registry.Discovery {
	return discovery{Discovery: d, every: every}
}

type discovery struct {
	registry.Discovery
	every time.Duration
}

func (p discovery) Watch(_ context.Context, svc string) (registry.Watcher, error) {
	return &watcher{d: p.Discovery, svc: svc, every: p.every, done: make(chan struct{})}, nil
}

type watcher struct {
	d         registry.Discovery
	svc       string
	every     time.Duration
	done      chan struct{}
	closeOnce sync.Once
	started   bool
	last      []registry.Instance
}

func (w *watcher) Next(ctx context.Context) ([]registry.Instance, error) {
	for {
		if w.started {
			t := time.NewTimer(w.every)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-w.done:
				t.Stop()
				return nil, registry.ErrClosed
			case <-t.C:
			}
		}
		got, err := w.d.Lookup(ctx, w.svc)
		if err != nil {
			w.started = true
			return nil, err
		}
		if !w.started || !driver.EqualSets(got, w.last) {
			w.started, w.last = true, got
			return got, nil
		}
	}
}

func (w *watcher) Close() error {
	w.closeOnce.Do(func() { close(w.done) })
	return nil
}
