package harness

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// rolling restarts cfg.RollServers servers in turn, cfg.Rolls restarts in
// all, each on a new port, while a client calls them steadily through a
// Wayfinder resolver with no retry policy. The servers use Wayfinder's
// lifecycle (NOT_SERVING, deregister, wait until gone from the watch
// view, GracefulStop); the baseline stops them the seed's way: stop
// serving first, deregister after.
func rolling(tb testing.TB, be *Backend, cfg Config) ([]Sample, error) {
	var out []Sample
	for _, variant := range []string{"drain", "naive"} {
		s, err := rollOne(tb, be, cfg, variant == "naive")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", variant, err)
		}
		s.Variant = variant
		out = append(out, s)
	}
	return out, nil
}

func rollOne(tb testing.TB, be *Backend, cfg Config, naive bool) (Sample, error) {
	ctx := tb.Context()
	svc := uniqueService("roll")
	srvReg := be.Open(tb, nil)
	gen := 0
	start := func() (*server.Server, error) {
		gen++
		id := fmt.Sprintf("roll-%d", gen)
		s, err := server.New(srvReg, svc, server.WithID(id), server.WithDrainTimeout(10*time.Second))
		if err != nil {
			return nil, err
		}
		hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: id})
		if err := s.Start(ctx); err != nil {
			return nil, err
		}
		return s, nil
	}
	var live []*server.Server
	tb.Cleanup(func() {
		for _, s := range live {
			s.Stop(context.Background())
		}
	})
	for range cfg.RollServers {
		s, err := start()
		if err != nil {
			return Sample{}, err
		}
		live = append(live, s)
	}
	_, client := dial(tb, be.Open(tb, nil), newCache(tb), svc, "round_robin", be.dialOpts...)
	if _, err := call(ctx, client, 30*time.Second, grpc.WaitForReady(true)); err != nil {
		return Sample{}, fmt.Errorf("warm-up call: %w", err)
	}
	l := startLoad(client, 4, 2*time.Millisecond, 5*time.Second)
	var stops []time.Duration
	for range cfg.Rolls {
		old := live[0]
		live = live[1:]
		t0 := time.Now()
		if naive {
			old.GRPC().Stop()
			if err := srvReg.Deregister(ctx, old.Instance()); err != nil {
				l.stop()
				return Sample{}, fmt.Errorf("deregister: %w", err)
			}
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := old.Stop(sctx)
		cancel()
		if err != nil {
			l.stop()
			return Sample{}, fmt.Errorf("Stop(%s): %w", old, err)
		}
		stops = append(stops, time.Since(t0))
		s, err := start()
		if err != nil {
			l.stop()
			return Sample{}, err
		}
		live = append(live, s)
		// Roll on once the new server takes the client's traffic, as a
		// rolling deploy waits for its new replica. A fixed pause here
		// assumed the client's watch keeps up: under load it lagged two
		// rolls behind and knew only stopped servers.
		if !wait.Until(30*time.Second, func() bool { return l.served(s.Instance().ID) > 0 }) {
			l.stop()
			return Sample{}, fmt.Errorf("new server %s took no call within 30s", s.Instance().ID)
		}
	}
	l.stop()
	calls, failures := l.snapshot()
	m := map[string]float64{
		"restarts":     float64(len(stops)),
		"calls":        float64(calls),
		"failed_calls": float64(failures),
		"failed_pct":   100 * float64(failures) / float64(max(calls, 1)),
	}
	putPercentiles(m, "stop", stops)
	var notes []string
	if err := l.err(); err != nil {
		notes = append(notes, "last error: "+err.Error())
	}
	return Sample{Metrics: m, Notes: notes}, nil
}
