package consul_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

type nextResult struct {
	at  time.Time
	set []registry.Instance
	err error
}

// TestWatchLivenessBound: a watch whose agent answers nothing for longer
// than WithUnavailableAfter reports ErrUnavailable, and re-sends the set
// once the agent answers again. The agent is frozen with SIGSTOP: the
// kernel keeps accepting connections, so without the bound the blocking
// query in flight hangs until its HTTP timeout (wait + wait/16 + slack,
// over 5 minutes by default).
func TestWatchLivenessBound(t *testing.T) {
	const bound = 2 * time.Second
	agent := testenv.StartConsul(t)
	reg := newReg(t, agent.HTTPAddr())
	cli := newReg(t, agent.HTTPAddr(), consul.WithUnavailableAfter(bound))
	svc := registrytest.ServiceName(t)
	a := registrytest.MakeInstance(svc, 1)
	if err := reg.Register(ctxT(t, 10*time.Second), a); err != nil {
		t.Fatal(err)
	}
	w, err := cli.Watch(context.Background(), svc)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	nextUntil(t, w, 20*time.Second, "a", func(s []registry.Instance) bool { return sameIDs(s, a.ID) })

	results := make(chan nextResult, 64)
	go func() {
		for {
			set, err := w.Next(context.Background())
			if errors.Is(err, registry.ErrClosed) {
				close(results)
				return
			}
			results <- nextResult{time.Now(), set, err}
		}
	}()
	// Healthy but idle: the blocking query is in flight and the agent
	// answers the probe, so three bounds pass without a report.
	select {
	case r := <-results:
		t.Fatalf("Next() on an idle, healthy watch = %v, %v; want it to block", ids(r.set), r.err)
	case <-time.After(3 * bound):
	}

	start := time.Now()
	agent.Pause(t)
	t.Cleanup(func() { agent.Resume(t) })
	limit := bound + bound/2 + time.Second
	select {
	case r := <-results:
		took := time.Since(start)
		if !errors.Is(r.err, registry.ErrUnavailable) || r.set != nil {
			t.Fatalf("Next() after %v with the agent frozen = %v, %v; want nil and ErrUnavailable", took, ids(r.set), r.err)
		}
		if took > limit {
			t.Errorf("Next() reported the frozen agent after %v, want ≤ %v (bound %v)", took, limit, bound)
		}
		t.Logf("ErrUnavailable %v after SIGSTOP (bound %v): %v", took.Round(time.Millisecond), bound, r.err)
	case <-time.After(20 * time.Second):
		t.Fatalf("Next() reported nothing within 20s of SIGSTOP (bound %v)", bound)
	}

	back := time.Now()
	agent.Resume(t)
	for r := range results {
		if r.err != nil {
			if !errors.Is(r.err, registry.ErrUnavailable) {
				t.Errorf("Next() during the outage = %v, want ErrUnavailable", r.err)
			}
			continue
		}
		if !sameIDs(r.set, a.ID) {
			t.Fatalf("Next() after SIGCONT = %v, want [%s]", ids(r.set), a.ID)
		}
		t.Logf("set re-sent %v after SIGCONT", r.at.Sub(back).Round(time.Millisecond))
		if d := r.at.Sub(back); d > 2*time.Second {
			t.Errorf("set re-sent %v after SIGCONT, want ≤ 2s", d)
		}
		return
	}
}
