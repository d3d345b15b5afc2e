package consul_test

import (
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// TestWatchWakesWhenAgentReturns: a watch whose retry backoff has grown
// long (here at least 10 s) still sees the agent's return within about
// the probe interval, and so does a registration: after a dev agent's
// restart (which forgets everything) the instance is back without
// waiting for its next heartbeat.
func TestWatchWakesWhenAgentReturns(t *testing.T) {
	agent := testenv.StartConsul(t)
	slow := consul.WithBackoff(20*time.Second, 20*time.Second)
	server := newReg(t, agent.HTTPAddr(), slow, consul.WithTTLCheck(30*time.Second))
	client := newReg(t, agent.HTTPAddr(), slow)
	svc := registrytest.ServiceName(t)
	a := registrytest.MakeInstance(svc, 1)
	if err := server.Register(ctxT(t, 10*time.Second), a); err != nil {
		t.Fatal(err)
	}
	// The server watches its own service, as the server lifecycle does.
	own := mustWatch(t, server, svc)
	defer own.Close()
	w := mustWatch(t, client, svc)
	defer w.Close()
	nextUntil(t, w, 10*time.Second, "a", func(in []registry.Instance) bool { return sameIDs(in, a.ID) })

	agent.Kill()
	if _, err := w.Next(ctxT(t, 10*time.Second)); err == nil {
		t.Fatal("Next() after the agent died = nil error, want ErrUnavailable")
	}
	time.Sleep(time.Second) // both watches are now in a backoff of 10-20 s
	agent.Restart(t)
	back := time.Now()
	// Without the probe the watch would sleep out its backoff (≥ 10 s)
	// and the registration its 10 s heartbeat interval.
	nextUntil(t, w, 8*time.Second, "a re-registered and seen", func(in []registry.Instance) bool { return sameIDs(in, a.ID) })
	t.Logf("instance back in the watcher's view %v after the agent returned", time.Since(back).Round(time.Millisecond))
}
