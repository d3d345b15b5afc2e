package consul_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// pollWatcher is the baseline: the 2019 seed's resolver, which read the
// service every 500 ms whether or not anything changed.
type pollWatcher struct {
	r      registry.Discovery
	svc    string
	every  time.Duration
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sets   chan []registry.Instance
}

func newPollWatcher(r registry.Discovery, svc string, every time.Duration) *pollWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pollWatcher{r: r, svc: svc, every: every, cancel: cancel, sets: make(chan []registry.Instance, 1)}
	p.wg.Go(func() {
		var last []registry.Instance
		first := true
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if got, err := r.Lookup(ctx, svc); err == nil && (first || !driver.EqualSets(got, last)) {
				first, last = false, got
				select {
				case p.sets <- got:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	})
	return p
}

func (p *pollWatcher) Next(ctx context.Context) ([]registry.Instance, error) {
	select {
	case s := <-p.sets:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *pollWatcher) Close() error { p.cancel(); p.wg.Wait(); return nil }

// BenchmarkPropagation measures the time from Register (or Deregister)
// returning to a watcher's Next including (or excluding) the instance,
// against the real dev agent. Each iteration is two changes; run with
// -benchtime=100x for 200 changes. Changes are spaced randomly by
// 100-600 ms, wider than the poll period, so that the poller's phase is
// uniform rather than locked to the benchmark's rhythm.
func BenchmarkPropagation(b *testing.B) {
	for _, mode := range []string{"blocking", "poll500ms"} {
		b.Run(mode, func(b *testing.B) {
			server := newReg(b, shared.HTTPAddr())
			client := newReg(b, shared.HTTPAddr())
			svc := benchService(b)
			var w registry.Watcher
			if mode == "blocking" {
				var err error
				if w, err = client.Watch(context.Background(), svc); err != nil {
					b.Fatal(err)
				}
			} else {
				w = newPollWatcher(client, svc, 500*time.Millisecond)
			}
			defer w.Close()
			ctx := ctxT(b, time.Hour)
			if _, err := w.Next(ctx); err != nil {
				b.Fatal(err)
			}
			var lat []time.Duration
			until := func(cond func([]registry.Instance) bool) {
				for {
					got, err := w.Next(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if cond(got) {
						return
					}
				}
			}
			inst := registrytest.MakeInstance(svc, 1)
			b.ResetTimer()
			for b.Loop() {
				time.Sleep(100*time.Millisecond + rand.N(500*time.Millisecond))
				if err := server.Register(ctx, inst); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				until(func(in []registry.Instance) bool { return len(in) == 1 })
				lat = append(lat, time.Since(start))
				time.Sleep(100*time.Millisecond + rand.N(500*time.Millisecond))
				if err := server.Deregister(ctx, inst); err != nil {
					b.Fatal(err)
				}
				start = time.Now()
				until(func(in []registry.Instance) bool { return len(in) == 0 })
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(pct(0.5), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(len(lat)), "changes")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkIdleLoad counts the requests an idle watch of one service
// makes, through a counting proxy, over a window, and reports requests
// per watched service per minute. With the default 5 minute wait the
// steady state is 0.2/min; the first read and the first long poll are
// in the window too. The polling baseline makes 120/min.
func BenchmarkIdleLoad(b *testing.B) {
	const window = 30 * time.Second
	for _, mode := range []string{"blocking", "poll500ms"} {
		b.Run(mode, func(b *testing.B) {
			proxy := newCountingProxyB(b, "http://"+shared.HTTPAddr())
			svc := benchService(b)
			server := newReg(b, shared.HTTPAddr())
			inst := registrytest.MakeInstance(svc, 1)
			if err := server.Register(ctxT(b, 10*time.Second), inst); err != nil {
				b.Fatal(err)
			}
			client := newReg(b, proxy.Listener.Addr().String(), consul.WithWait(consul.DefaultWait))
			var total float64
			for b.Loop() {
				before := proxy.count("/v1/health/service/" + svc)
				var w registry.Watcher
				if mode == "blocking" {
					w, _ = client.Watch(context.Background(), svc)
				} else {
					w = newPollWatcher(client, svc, 500*time.Millisecond)
				}
				ctx, cancel := context.WithTimeout(context.Background(), window)
				for {
					if _, err := w.Next(ctx); err != nil {
						break
					}
				}
				cancel()
				w.Close()
				total += float64(proxy.count("/v1/health/service/"+svc) - before)
			}
			b.ReportMetric(total/float64(b.N)/window.Minutes(), "req/service/min")
			b.ReportMetric(0, "ns/op")
			_ = server.Deregister(ctxT(b, 10*time.Second), inst)
		})
	}
}

// benchService returns a fresh service name; registrytest.ServiceName
// takes a *testing.T.
func benchService(b *testing.B) string {
	return fmt.Sprintf("bench-%x-%s", rand.Uint32(), strings.ReplaceAll(b.Name(), "/", "-"))
}
