package harness

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// outage takes the whole registry down for cfg.Outage while a client
// calls three servers (Wayfinder's server lifecycle, registered through
// their own registry client) through a Wayfinder resolver, then brings it
// back. It reports the calls that failed while the registry was down and
// in the settle time after, the time from the registry answering again to
// the client's watch being fresh (an answer read) and to a change made at
// that moment reaching the picker, and whether the client's set then
// equals the registry's.
func outage(tb testing.TB, be *Backend, cfg Config) ([]Sample, error) {
	ctx := tb.Context()
	svc := uniqueService("outage")
	srvReg := be.Open(tb, nil)
	var servers []*server.Server
	tb.Cleanup(func() {
		for _, s := range servers {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			s.Stop(sctx)
			cancel()
		}
	})
	var names []string
	for i := range 3 {
		id := fmt.Sprintf("out-%d", i)
		s, err := server.New(srvReg, svc, server.WithID(id), server.WithDrainTimeout(2*time.Second))
		if err != nil {
			return nil, err
		}
		hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: id})
		if err := s.Start(ctx); err != nil {
			return nil, err
		}
		servers = append(servers, s)
		names = append(names, id)
	}
	cache := newCache(tb)
	_, client := dial(tb, be.Open(tb, nil), cache, svc, "round_robin", be.dialOpts...)
	if err := waitServing(ctx, client, 30*time.Second, names...); err != nil {
		return nil, err
	}
	fresh := startHello(tb, "fresh")
	l := startLoad(client, 4, 2*time.Millisecond, 5*time.Second)
	defer l.stop()
	sleep(ctx, 200*time.Millisecond)

	c0, f0 := l.snapshot()
	tDown := time.Now()
	be.Stop(tb)
	sleep(ctx, cfg.Outage)
	be.Start(tb)
	tUp := time.Now()
	c1, f1 := l.snapshot()

	// A change made as soon as the registry answers: a new instance,
	// registered by a plain client (with retries while it reconnects).
	regErr := make(chan error, 1)
	freshReg := be.Open(tb, nil)
	go func() { regErr <- register(context.Background(), freshReg, fresh.instance(svc), 30*time.Second) }()

	recovered := time.Duration(-1)
	reached := time.Duration(-1)
	deadline := tUp.Add(60 * time.Second)
	for time.Now().Before(deadline) && (recovered < 0 || reached < 0) {
		if recovered < 0 && watchFresh(cache, svc) {
			recovered = time.Since(tUp)
		}
		if reached < 0 && l.served("fresh") > 0 {
			reached = time.Since(tUp)
		}
		sleep(ctx, time.Millisecond)
	}
	if err := <-regErr; err != nil {
		return nil, fmt.Errorf("registering after the outage: %w", err)
	}
	// Settle, then wait until the registry holds all four instances again
	// (Consul restores registrations with critical checks until their
	// next heartbeat), and compare the client's set with the registry's.
	sleep(ctx, 2*time.Second)
	l.stop()
	c2, f2 := l.snapshot()
	check := be.Open(tb, nil)
	var truth []registry.Instance
	restored := time.Duration(-1)
	for time.Since(tUp) < 60*time.Second {
		var err error
		if truth, err = lookupRetry(ctx, check, svc); err != nil {
			return nil, err
		}
		if len(truth) == 4 {
			restored = time.Since(tUp)
			break
		}
		sleep(ctx, 10*time.Millisecond)
	}
	var view []registry.Instance
	converged := false
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !converged; sleep(ctx, 10*time.Millisecond) {
		view = clientView(cache, svc)
		converged = equalIDs(ids(view), ids(truth))
	}
	m := map[string]float64{
		"outage_s":                 tUp.Sub(tDown).Seconds(),
		"calls_during_outage":      float64(c1 - c0),
		"failed_during_outage":     float64(f1 - f0),
		"calls_after_outage":       float64(c2 - c1),
		"failed_after_outage":      float64(f2 - f1),
		"watch_fresh_after_ms":     ms(recovered),
		"change_reaches_picker_ms": ms(reached),
		"converged":                b2f(converged),
		"registry_restored_ms":     ms(restored),
	}
	var notes []string
	if !converged {
		notes = append(notes, fmt.Sprintf("not converged: client sees %v, registry has %v", ids(view), ids(truth)))
	}
	if err := l.err(); err != nil && f2 > f0 {
		notes = append(notes, "a failed call: "+err.Error())
	}
	return []Sample{{Variant: "wayfinder", Metrics: m, Notes: notes}}, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func equalIDs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// watchFresh reports whether the cache's watch of svc has read the
// registry since its last error.
func watchFresh(c *resolver.Cache, svc string) bool {
	for _, w := range c.Watches() {
		if w.Service == svc {
			return w.Fresh
		}
	}
	return false
}

// clientView returns the cache's last good set of svc.
func clientView(c *resolver.Cache, svc string) []registry.Instance {
	for _, w := range c.Watches() {
		if w.Service == svc {
			return w.Instances
		}
	}
	return nil
}

func lookupRetry(ctx context.Context, d registry.Discovery, svc string) ([]registry.Instance, error) {
	var err error
	for range 50 {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var got []registry.Instance
		got, err = d.Lookup(cctx, svc)
		cancel()
		if err == nil {
			return got, nil
		}
		sleep(ctx, 100*time.Millisecond)
	}
	return nil, fmt.Errorf("lookup %s: %w", svc, err)
}
