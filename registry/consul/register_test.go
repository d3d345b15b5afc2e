package consul_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

var fast = consul.WithBackoff(50*time.Millisecond, 500*time.Millisecond)

// waitStatus waits until cond holds for inst's registration status.
func waitStatus(t *testing.T, r *consul.Registry, inst registry.Instance, d time.Duration, what string, cond func(registry.RegistrationStatus) bool) registry.RegistrationStatus {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		s := r.Status(inst)
		if cond(s) {
			return s
		}
		select {
		case <-s.Changed:
		case <-timer.C:
			t.Fatalf("Status(%s) never became %s within %v; last = %+v", inst.Key(), what, d, s)
		}
	}
}

// TestAgentRestart restarts the agent under a running registrant and
// watcher: a dev agent comes back empty (the registrant must register
// again), a server with a data dir restores its state.
func TestAgentRestart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server bool
		kill   bool
	}{
		{"dev-agent-killed", false, true},
		{"server-stopped", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agent := testenv.StartConsulWith(t, testenv.ConsulOptions{Server: tc.server})
			server := newReg(t, agent.HTTPAddr(), consul.WithTTLCheck(3*time.Second), fast)
			client := newReg(t, agent.HTTPAddr(), fast)
			svc := registrytest.ServiceName(t)
			a, b := registrytest.MakeInstance(svc, 1), registrytest.MakeInstance(svc, 2)
			for _, inst := range []registry.Instance{a, b} {
				if err := server.Register(ctxT(t, 10*time.Second), inst); err != nil {
					t.Fatalf("Register(%v) = %v", inst, err)
				}
			}
			w, err := client.Watch(t.Context(), svc)
			if err != nil {
				t.Fatalf("Watch = %v", err)
			}
			defer w.Close()
			before := nextUntil(t, w, 10*time.Second, "a and b", func(in []registry.Instance) bool { return sameIDs(in, a.ID, b.ID) })

			if tc.kill {
				agent.Kill()
			} else {
				agent.Stop()
			}
			// While the agent is down the watcher reports an error and
			// the registrations notice the failure.
			ctx := ctxT(t, 20*time.Second)
			if got, err := w.Next(ctx); !errors.Is(err, registry.ErrUnavailable) {
				t.Fatalf("Next() with the agent down = %v, %v; want ErrUnavailable", ids(got), err)
			}
			waitStatus(t, server, a, 10*time.Second, "retrying", func(s registry.RegistrationStatus) bool { return s.State == registry.StateRetrying })
			agent.Start(t)

			for _, inst := range []registry.Instance{a, b} {
				if tc.server {
					waitStatus(t, server, inst, 20*time.Second, "registered", func(s registry.RegistrationStatus) bool { return s.State == registry.StateRegistered })
				} else {
					// The dev agent forgot everything: only a new
					// registration brings the instance back.
					waitStatus(t, server, inst, 20*time.Second, "re-registered", func(s registry.RegistrationStatus) bool {
						return s.State == registry.StateRegistered && s.Registrations >= 2
					})
				}
			}
			nextUntil(t, w, 20*time.Second, "a and b after the restart", func(in []registry.Instance) bool { return sameIDs(in, a.ID, b.ID) })
			after := lookupUntil(t, client, svc, 10*time.Second, "a and b", func(in []registry.Instance) bool { return sameIDs(in, a.ID, b.ID) })
			// Registering again re-sends the original stamp: the
			// registration, not the instance, was lost.
			for i := range after {
				if before[i].Registered.IsZero() || !after[i].Registered.Equal(before[i].Registered) {
					t.Errorf("%s: Registered = %v before the restart, %v after; want the same non-zero stamp",
						after[i].ID, before[i].Registered, after[i].Registered)
				}
			}
		})
	}
}

// TestRegisterWhileAgentDown: Register reports the failure but keeps
// trying, and the instance appears once the agent is up.
func TestRegisterWhileAgentDown(t *testing.T) {
	agent := testenv.StartConsul(t)
	agent.Stop()
	r := newReg(t, agent.HTTPAddr(), fast)
	inst := registrytest.MakeInstance(registrytest.ServiceName(t), 1)
	if err := r.Register(ctxT(t, 10*time.Second), inst); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Register with the agent down = %v, want ErrUnavailable", err)
	}
	if s := r.Status(inst); s.State != registry.StateRetrying || s.Err == nil {
		t.Fatalf("Status after a failed Register = %+v, want retrying with an error", s)
	}
	agent.Start(t)
	waitStatus(t, r, inst, 20*time.Second, "registered", func(s registry.RegistrationStatus) bool { return s.State == registry.StateRegistered })
	lookupUntil(t, r, inst.Service, 10*time.Second, "the instance", func(in []registry.Instance) bool { return sameIDs(in, inst.ID) })
}

// TestHeartbeatMirrorsHealth: the TTL check follows the grpc.health.v1
// status of the server, both ways.
func TestHeartbeatMirrorsHealth(t *testing.T) {
	hs := health.NewServer()
	r := newReg(t, shared.HTTPAddr(), consul.WithTTLCheck(time.Second), consul.WithHealth(consul.GRPCHealth(hs)), fast)
	svc := registrytest.ServiceName(t)
	inst := registrytest.MakeInstance(svc, 1)
	if err := r.Register(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Register = %v", err)
	}
	w, err := r.Watch(t.Context(), svc)
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	defer w.Close()
	nextUntil(t, w, 10*time.Second, "the instance", func(in []registry.Instance) bool { return sameIDs(in, inst.ID) })

	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	nextUntil(t, w, 10*time.Second, "no instance once NOT_SERVING", func(in []registry.Instance) bool { return len(in) == 0 })
	// The catalog may change before the heartbeat's answer is read.
	waitStatus(t, r, inst, 5*time.Second, "registered and unhealthy", func(s registry.RegistrationStatus) bool {
		return !s.Healthy && s.State == registry.StateRegistered
	})
	// A per-service status takes precedence over the server's.
	hs.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	nextUntil(t, w, 10*time.Second, "the instance once its service is SERVING", func(in []registry.Instance) bool { return sameIDs(in, inst.ID) })
}

// TestGRPCCheckDropsKilledServer: with the native gRPC check, a server
// that dies without deregistering leaves the passing set within the
// check's interval + timeout (plus propagation).
func TestGRPCCheckDropsKilledServer(t *testing.T) {
	const interval, timeout = 500 * time.Millisecond, 500 * time.Millisecond
	srv := testenv.StartHello(t, "victim")
	r := newReg(t, shared.HTTPAddr(), consul.WithGRPCCheck(interval, timeout), fast)
	svc := registrytest.ServiceName(t)
	inst := registry.Instance{ID: "victim", Service: svc, Address: srv.Addr}
	if err := r.Register(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Register = %v", err)
	}
	w, err := r.Watch(t.Context(), svc)
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	defer w.Close()
	nextUntil(t, w, 10*time.Second, "the instance", func(in []registry.Instance) bool { return sameIDs(in, inst.ID) })
	// Let the agent probe it at least once, so that passing is its own
	// verdict and not only the initial status.
	time.Sleep(2 * interval)
	if got, err := r.Lookup(ctxT(t, 5*time.Second), svc); err != nil || !sameIDs(got, inst.ID) {
		t.Fatalf("Lookup with the server up = %v, %v; want the instance (the agent's gRPC probe fails?)", ids(got), err)
	}
	// Stop the registrant's loops first, as a crashed process would
	// leave nothing running, then kill the server without deregistering.
	r2 := newReg(t, shared.HTTPAddr(), fast)
	r.Close()
	start := time.Now()
	srv.Server.Stop()
	// The bound is the check's interval + timeout, plus slack for the
	// agent's catalog sync and the watch round trip on a loaded 2-core
	// machine (typically well under a second; see the log line).
	bound := interval + timeout + 8*time.Second
	w2 := mustWatch(t, r2, svc)
	ctx := ctxT(t, bound)
	for {
		got, err := w2.Next(ctx)
		if err == nil && len(got) == 0 {
			break
		}
		if ctx.Err() != nil {
			checks, _, cerr := r2.Client().Health().Checks(svc, nil)
			var desc []string
			for _, c := range checks {
				desc = append(desc, fmt.Sprintf("%s=%s (%q)", c.CheckID, c.Status, c.Output))
			}
			local, _ := r2.Client().Agent().Checks()
			for _, c := range local {
				if c.ServiceName == svc {
					desc = append(desc, fmt.Sprintf("agent-local %s=%s (%q)", c.CheckID, c.Status, c.Output))
				}
			}
			t.Fatalf("killed server still passing %v after the kill; checks: %v %v", bound, desc, cerr)
		}
	}
	t.Logf("killed server left the passing set after %v (check interval %v, timeout %v)", time.Since(start).Round(time.Millisecond), interval, timeout)
	_ = r2.Deregister(ctxT(t, 5*time.Second), inst)
}

// TestInvalidMetadataRejectedBeforeCall: what Consul would refuse is an
// ErrInvalidInstance naming the field, and no request leaves the process.
func TestInvalidMetadataRejectedBeforeCall(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		w.WriteHeader(500)
	}))
	defer srv.Close()
	r := newReg(t, srv.Listener.Addr().String())
	many := map[string]string{}
	for i := range registry.MaxMetadataPairs + 1 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	good := registry.Instance{ID: "i1", Service: "meta", Address: "127.0.0.1:9000"}
	for name, tc := range map[string]struct {
		meta  map[string]string
		field string
	}{
		"dot in key":       {map[string]string{"a.b": "x"}, `Metadata["a.b"]`},
		"too many pairs":   {many, "Metadata"},
		"long key":         {map[string]string{strings.Repeat("k", 129): "x"}, "Metadata"},
		"long value":       {map[string]string{"k": strings.Repeat("v", 513)}, `Metadata["k"]`},
		"consul- prefix":   {map[string]string{"consul-x": "x"}, `Metadata["consul-x"]`},
		"wayfinder prefix": {map[string]string{"wayfinder_id": "x"}, `Metadata["wayfinder_id"]`},
	} {
		inst := good.Clone()
		inst.Metadata = tc.meta
		err := r.Register(ctxT(t, 5*time.Second), inst)
		var ie *registry.InvalidError
		if !errors.Is(err, registry.ErrInvalidInstance) || !errors.As(err, &ie) || !strings.HasPrefix(ie.Field, tc.field) {
			t.Errorf("%s: Register = %v, want an InvalidError on %s", name, err, tc.field)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("invalid registrations sent %d requests, want 0", n)
	}
}

// TestDeregisterBoundedByContext: with an agent that accepts connections
// and never answers, Deregister returns when its context ends.
func TestDeregisterBoundedByContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan struct{})
	defer close(done)
	go func() { // accept and hold connections until the test ends
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { <-done; c.Close() }()
		}
	}()
	r := newReg(t, l.Addr().String())
	inst := registrytest.MakeInstance("blackhole", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = r.Deregister(ctx, inst)
	if !errors.Is(err, registry.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Deregister against a silent agent = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Deregister took %v with a 300ms context", d)
	}
}

func mustWatch(t *testing.T, r registry.Discovery, svc string) registry.Watcher {
	t.Helper()
	w, err := r.Watch(t.Context(), svc)
	if err != nil {
		t.Fatalf("Watch(%q) = %v", svc, err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}
