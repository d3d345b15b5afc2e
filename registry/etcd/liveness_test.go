package etcd_test

import (
	"errors"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
)

// TestWatchLivenessBound: a watch that cannot read etcd for longer than
// WithUnavailableAfter reports ErrUnavailable, whatever the connection
// state, and re-sends the set once etcd answers again. "pause" freezes
// the member with SIGSTOP: the connection stays open and Ready until
// keepalive gives up (10 s + 5 s). "stall" drops the connection at a
// proxy that then accepts but forwards nothing: the connection is
// Connecting, not TRANSIENT_FAILURE, until the connect timeout.
func TestWatchLivenessBound(t *testing.T) {
	const bound = 2 * time.Second
	for _, mode := range []string{"pause", "stall"} {
		t.Run(mode, func(t *testing.T) {
			srv := testenv.StartEtcd(t)
			reg := newRegistry(t, []string{srv.Endpoint()})
			ep := srv.Endpoint()
			var px *proxy
			if mode == "stall" {
				px = newProxy(t, srv.Endpoint())
				ep = px.addr
			}
			cli := newRegistry(t, []string{ep}, etcd.WithUnavailableAfter(bound))
			svc := svcName(t)
			a := inst(svc, 1)
			if err := reg.Register(ctxFor(t, 10*time.Second), a); err != nil {
				t.Fatal(err)
			}
			w, err := cli.Watch(ctxFor(t, time.Second), svc)
			if err != nil {
				t.Fatal(err)
			}
			results := follow(t, w)
			await(t, results, 10*time.Second, "a", has(a))
			// Healthy but idle: progress answers keep the watch live, so
			// three bounds pass without a report.
			select {
			case r := <-results:
				t.Fatalf("Next() on an idle, healthy watch = %v, %v; want it to block", ids(r.set), r.err)
			case <-time.After(3 * bound):
			}

			start := time.Now()
			if mode == "pause" {
				srv.Pause(t)
				t.Cleanup(func() { srv.Resume(t) })
			} else {
				px.stall()
			}
			limit := bound + bound/2 + time.Second
			select {
			case r := <-results:
				took := time.Since(start)
				if !errors.Is(r.err, registry.ErrUnavailable) || r.set != nil {
					t.Fatalf("Next() after %v of silence = %v, %v; want nil and ErrUnavailable", took, ids(r.set), r.err)
				}
				if took > limit {
					t.Errorf("Next() reported the outage after %v, want ≤ %v (bound %v)", took, limit, bound)
				}
				t.Logf("%s: ErrUnavailable after %v (bound %v): %v", mode, took.Round(time.Millisecond), bound, r.err)
			case <-time.After(20 * time.Second):
				t.Fatalf("Next() reported nothing within 20s of %s (bound %v)", mode, bound)
			}

			back := time.Now()
			if mode == "pause" {
				srv.Resume(t)
			} else {
				px.restore()
			}
			got, errs := await(t, results, 15*time.Second, "a again", has(a))
			for _, err := range errs {
				if !errors.Is(err, registry.ErrUnavailable) {
					t.Errorf("Next() during the outage = %v, want ErrUnavailable", err)
				}
			}
			t.Logf("%s: set re-sent %v after recovery", mode, got.at.Sub(back).Round(time.Millisecond))
		})
	}
}
