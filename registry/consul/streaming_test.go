package consul_test

import (
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// TestWatchQueryBackend: through a client agent with
// use_streaming_backend (Consul's default) a watch's blocking queries are
// answered by the agent's streaming backend, in every consistency mode
// and with the agent cache; with near, or through an agent with
// use_streaming_backend = false, by blocking RPCs. QueryBackends reports
// which, from X-Consul-Query-Backend.
func TestWatchQueryBackend(t *testing.T) {
	server := testenv.StartConsulWith(t, testenv.ConsulOptions{Server: true})
	join := []string{server.SerfLANAddr()}
	on := testenv.StartConsulWith(t, testenv.ConsulOptions{Client: true, RetryJoin: join})
	off := testenv.StartConsulWith(t, testenv.ConsulOptions{Client: true, RetryJoin: join, NoStreamingBackend: true})
	reg := newReg(t, server.HTTPAddr())
	for _, c := range []struct {
		name      string
		agent     *testenv.ConsulAgent
		opts      []consul.Option
		streaming bool
	}{
		{"streaming", on, nil, true},
		// The streaming backend ignores the consistency mode.
		{"streaming/consistent", on, []consul.Option{consul.WithConsistency(consul.ConsistencyConsistent)}, true},
		{"streaming/stale", on, []consul.Option{consul.WithConsistency(consul.ConsistencyStale)}, true},
		{"streaming/cached", on, []consul.Option{consul.WithAgentCache()}, true},
		// near needs the servers' coordinates: never streamed.
		{"streaming/near", on, []consul.Option{consul.WithNear("_agent")}, false},
		{"no_streaming", off, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReg(t, c.agent.HTTPAddr(), c.opts...)
			svc := registrytest.ServiceName(t)
			w := mustWatch(t, r, svc)
			nextUntil(t, w, 10*time.Second, "the empty set", func(in []registry.Instance) bool { return len(in) == 0 })
			a := registrytest.MakeInstance(svc, 1)
			if err := reg.Register(ctxT(t, 10*time.Second), a); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { reg.Deregister(ctxT(t, 10*time.Second), a) })
			nextUntil(t, w, 10*time.Second, "a", func(in []registry.Instance) bool { return sameIDs(in, a.ID) })
			got := r.QueryBackends()
			if c.streaming && (got.Streaming == 0 || got.BlockingQuery != 0 || got.Unreported != 0) {
				t.Errorf("QueryBackends() = %+v, want only streaming answers", got)
			}
			if !c.streaming && (got.BlockingQuery == 0 || got.Streaming != 0 || got.Unreported != 0) {
				t.Errorf("QueryBackends() = %+v, want only blocking-query answers", got)
			}
		})
	}
}
