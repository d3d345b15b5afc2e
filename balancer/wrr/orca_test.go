package wrr_test

import (
	"context"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/lbtest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// namedHello answers with its server's name.
type namedHello struct {
	hellopb.UnimplementedHelloServiceServer
	name string
}

func (h namedHello) SayHello(context.Context, *hellopb.HelloRequest) (*hellopb.HelloResponse, error) {
	return &hellopb.HelloResponse{Message: h.name}, nil
}

// startLoadServers starts real servers on 127.0.0.1:0 built
// WithLoadReports, named b0.., registered in env with the given registry
// weights, each reporting 100 queries per second (so that the
// capacities are fixed by the utilisation the test sets).
func startLoadServers(t *testing.T, env *lbtest.Env, weights ...int) []*server.Server {
	t.Helper()
	var out []*server.Server
	for i, w := range weights {
		name := "b" + string(rune('0'+i))
		s, err := server.New(env.Reg, lbtest.Service, server.WithID(name), server.WithWeight(w), server.WithLoadReports(),
			server.WithDrainTimeout(0), server.WithDrainDelay(0))
		if err != nil {
			t.Fatal(err)
		}
		hellopb.RegisterHelloServiceServer(s.GRPC(), namedHello{name: name})
		s.LoadReports().SetQPS(100)
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Stop(context.Background()) })
		out = append(out, s)
	}
	return out
}

// within reports whether counts over names are in proportion to
// weights within tol (relative).
func within(counts map[string]int, names []string, weights []float64, tol float64) bool {
	total, wsum := 0, 0.0
	for i, n := range names {
		total += counts[n]
		wsum += weights[i]
	}
	for i, n := range names {
		want := float64(total) * weights[i] / wsum
		if d := float64(counts[n]) - want; d > tol*want || -d > tol*want {
			return false
		}
	}
	return true
}

// waitShares waits until 2,000 calls split as weights (±10%), then
// checks 4,000 more (±10%).
func waitShares(t *testing.T, c hellopb.HelloServiceClient, what string, names []string, weights []float64) {
	t.Helper()
	var last map[string]int
	wait.For(t, 20*time.Second, what, func() bool {
		last = lbtest.Counts(context.Background(), c, 2000, 4)
		return within(last, names, weights, 0.1)
	})
	counts := lbtest.Counts(context.Background(), c, 4000, 4)
	if !within(counts, names, weights, 0.1) {
		t.Errorf("%s: %v, want in proportion to %v (±10%%)", what, counts, weights)
	}
}

// TestLoadReportsWeigh: with registry weights 1:1:2 and application
// utilisations 0.25, 0.5 and 0.5 at the same reported rate, the
// capacities are 400:200:200 (mean 266.7), so the blended weights are
// 1×1.5 : 1×0.75 : 2×0.75, shares 40/20/40%: the more loaded b1 gets
// half of b0's picks, and b2's registry weight still doubles its share.
func TestLoadReportsWeigh(t *testing.T) {
	env := lbtest.NewEnv(t)
	ss := startLoadServers(t, env, 1, 1, 2)
	for i, u := range []float64{0.25, 0.5, 0.5} {
		ss[i].LoadReports().SetApplicationUtilization(u)
	}
	_, client := env.Dial(`{"wayfinder_weighted_round_robin":{"loadReports":{"blackoutPeriod":"0s","weightUpdatePeriod":"100ms"}}}`)
	waitShares(t, client, "shares to follow the load reports", []string{"b0", "b1", "b2"}, []float64{0.4, 0.2, 0.4})
}

// TestLoadReportsExpire: weights follow the named utilisation the config
// asks for while servers report it, and the registry weights (1:3) again
// once their reports lack it for the expiration period.
func TestLoadReportsExpire(t *testing.T) {
	env := lbtest.NewEnv(t)
	ss := startLoadServers(t, env, 1, 3)
	ss[0].LoadReports().SetNamedUtilization("pool", 0.1)
	ss[1].LoadReports().SetNamedUtilization("pool", 0.9)
	// The CPU and application utilisation are ignored with a metric.
	ss[0].LoadReports().SetApplicationUtilization(0.9)
	_, client := env.Dial(`{"wayfinder_weighted_round_robin":{"loadReports":{"blackoutPeriod":"0s","weightUpdatePeriod":"100ms","weightExpirationPeriod":"1s","metric":"pool"}}}`)
	names := []string{"b0", "b1"}
	// Capacities 1000 and 111.1 (mean 555.6): weights 1×1.8 and 3×0.2.
	waitShares(t, client, "shares to follow the pool utilisation", names, []float64{1.8, 0.6})
	for _, s := range ss {
		s.LoadReports().DeleteNamedUtilization("pool")
	}
	waitShares(t, client, "the registry weights to rule again", names, []float64{1, 3})
}

// TestLoadReportsBlackout: reports weigh only after the blackout period,
// here longer than the test: the registry weights (1:1) rule although b0
// reports a tenth of b1's utilisation.
func TestLoadReportsBlackout(t *testing.T) {
	env := lbtest.NewEnv(t)
	ss := startLoadServers(t, env, 1, 1)
	ss[0].LoadReports().SetApplicationUtilization(0.05)
	ss[1].LoadReports().SetApplicationUtilization(0.5)
	_, client := env.Dial(`{"wayfinder_weighted_round_robin":{"loadReports":{"blackoutPeriod":"1h","weightUpdatePeriod":"100ms"}}}`)
	wait.For(t, 10*time.Second, "both servers to answer", func() bool {
		c := lbtest.Counts(context.Background(), client, 100, 4)
		return c["b0"] > 0 && c["b1"] > 0
	})
	for range 5 { // 1,000 calls at a time, over several update periods
		counts := lbtest.Counts(context.Background(), client, 1000, 4)
		if !within(counts, []string{"b0", "b1"}, []float64{1, 1}, 0.05) {
			t.Fatalf("in the blackout: %v, want 1:1 (±5%%)", counts)
		}
	}
}
