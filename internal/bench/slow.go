package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	_ "github.com/wayfinder-rpc/wayfinder/balancer/p2c" // registers wayfinder_p2c_ewma
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
)

// slowBackend runs cfg.TailBackends real servers; after a warm-up, one of
// them answers every call after cfg.TailStall, for cfg.TailDuration.
// Two ClientConns call them at the same time, one with grpc-go's
// round_robin and one with wayfinder_p2c_ewma, each call with a
// cfg.TailDeadline deadline, from the same number of closed-loop
// workers. It reports each policy's success rate and latency during the
// stall.
func slowBackend(tb testing.TB, be *Backend, cfg Config) ([]Sample, error) {
	ctx := tb.Context()
	svc := uniqueService("slow")
	reg := be.Open(tb, nil)
	var servers []*helloServer
	var names []string
	for i := range cfg.TailBackends {
		h := startHello(tb, fmt.Sprintf("b%d", i))
		if err := register(ctx, reg, h.instance(svc), 10*time.Second); err != nil {
			return nil, err
		}
		servers = append(servers, h)
		names = append(names, h.name)
	}
	policies := []string{"round_robin", "wayfinder_p2c_ewma"}
	clients := map[string]hellopb.HelloServiceClient{}
	for _, p := range policies {
		_, c := dial(tb, be.Open(tb, nil), newCache(tb), svc, p)
		if err := waitServing(ctx, c, 30*time.Second, names...); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		clients[p] = c
	}
	const workers = 8
	type stat struct {
		mu        sync.Mutex
		lat       []time.Duration
		failures  int
		recording bool
	}
	stats := map[string]*stat{}
	rctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, p := range policies {
		st := &stat{}
		stats[p] = st
		for range workers {
			wg.Go(func() {
				for rctx.Err() == nil {
					t0 := time.Now()
					_, err := call(context.Background(), clients[p], cfg.TailDeadline)
					d := time.Since(t0)
					st.mu.Lock()
					if st.recording {
						if err != nil {
							st.failures++
							d = max(d, cfg.TailDeadline)
						}
						st.lat = append(st.lat, d)
					}
					st.mu.Unlock()
					sleep(rctx, time.Millisecond)
				}
			})
		}
	}
	sleep(ctx, time.Second) // warm-up: every policy has latency figures
	slow := servers[len(servers)/2]
	slow.delay.Store(int64(cfg.TailStall))
	for _, st := range stats {
		st.mu.Lock()
		st.recording = true
		st.mu.Unlock()
	}
	sleep(ctx, cfg.TailDuration)
	for _, st := range stats {
		st.mu.Lock()
		st.recording = false
		st.mu.Unlock()
	}
	slow.delay.Store(0)
	stop()
	wg.Wait()
	var out []Sample
	for _, p := range policies {
		st := stats[p]
		n := len(st.lat)
		m := map[string]float64{
			"calls":       float64(n),
			"failed":      float64(st.failures),
			"success_pct": 100 * float64(n-st.failures) / float64(max(n, 1)),
			"p50_ms":      ms(percentile(st.lat, 0.50)),
			"p99_ms":      ms(percentile(st.lat, 0.99)),
			"p999_ms":     ms(percentile(st.lat, 0.999)),
			"max_ms":      ms(percentile(st.lat, 1)),
		}
		out = append(out, Sample{Variant: p, Metrics: m})
	}
	return out, nil
}
