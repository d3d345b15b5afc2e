package fakecc_test

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/connectivity"
	gresolver "google.golang.org/grpc/resolver"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/fakecc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lockedPolicy holds its mutex across NewSubConn and takes it in the
// state listener, as grpc's weighted_round_robin does (grpc's module is
// not importable here without more go.sum entries).
type lockedPolicy struct {
	gbalancer.Balancer // nil; only the methods below are called
	cc                 gbalancer.ClientConn

	mu    sync.Mutex
	ready int
}

func (p *lockedPolicy) UpdateClientConnState(s gbalancer.ClientConnState) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ep := range s.ResolverState.Endpoints {
		//lint:ignore SA1019 a leaf policy makes its SubConns with NewSubConn, one address each here.
		sc, err := p.cc.NewSubConn(ep.Addresses, gbalancer.NewSubConnOptions{StateListener: func(st gbalancer.SubConnState) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if st.ConnectivityState == connectivity.Ready {
				p.ready++
				p.cc.UpdateState(gbalancer.State{ConnectivityState: connectivity.Ready, Picker: base.NewErrPicker(nil)})
			}
		}})
		if err != nil {
			return err
		}
		sc.Connect()
	}
	return nil
}

func (p *lockedPolicy) Close() {}

// TestListenersOutsideNewSubConn: a fake that called a listener from
// inside NewSubConn would deadlock a policy that holds its mutex there.
func TestListenersOutsideNewSubConn(t *testing.T) {
	p := &lockedPolicy{}
	h := fakecc.BuildWith(func(cc gbalancer.ClientConn) gbalancer.Balancer { p.cc = cc; return p }, nil)
	defer h.Close()
	eps := []gresolver.Endpoint{
		{Addresses: []gresolver.Address{{Addr: "10.0.0.1:80"}}},
		{Addresses: []gresolver.Address{{Addr: "10.0.0.2:80"}}},
	}
	done := make(chan error, 1)
	go func() { done <- h.UpdateReady(eps) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("UpdateReady(2 endpoints) = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("UpdateReady(2 endpoints) did not return within 10s: a listener ran inside NewSubConn")
	}
	if _, state := h.CC.Picker(); state != connectivity.Ready || p.ready != 2 {
		t.Fatalf("after UpdateReady(2 endpoints): state %v, %d READY SubConns seen; want READY, 2", state, p.ready)
	}
}

// latePolicy registers no health listener itself: the test does, after
// READY was delivered, as pick_first under outlier_detection_experimental
// does from that policy's own goroutine.
type latePolicy struct {
	gbalancer.Balancer // nil; only the methods below are called
	cc                 gbalancer.ClientConn

	mu  sync.Mutex
	scs []gbalancer.SubConn
}

func (p *latePolicy) UpdateClientConnState(s gbalancer.ClientConnState) error {
	for _, ep := range s.ResolverState.Endpoints {
		//lint:ignore SA1019 a leaf policy makes its SubConns with NewSubConn, one address each here.
		sc, err := p.cc.NewSubConn(ep.Addresses, gbalancer.NewSubConnOptions{StateListener: func(gbalancer.SubConnState) {}})
		if err != nil {
			return err
		}
		p.mu.Lock()
		p.scs = append(p.scs, sc)
		p.mu.Unlock()
	}
	return nil
}

func (p *latePolicy) Close() {}

// TestReadyAllServesLateHealthListener: a health listener registered
// after READY gets SERVING from the next ReadyAll, once.
func TestReadyAllServesLateHealthListener(t *testing.T) {
	p := &latePolicy{}
	h := fakecc.BuildWith(func(cc gbalancer.ClientConn) gbalancer.Balancer { p.cc = cc; return p }, nil)
	defer h.Close()
	if err := h.UpdateReady([]gresolver.Endpoint{{Addresses: []gresolver.Address{{Addr: "10.0.0.1:80"}}}}); err != nil {
		t.Fatalf("UpdateReady(1 endpoint) = %v", err)
	}
	var mu sync.Mutex
	var got []connectivity.State
	p.mu.Lock()
	sc := p.scs[0]
	p.mu.Unlock()
	sc.RegisterHealthListener(func(s gbalancer.SubConnState) {
		mu.Lock()
		got = append(got, s.ConnectivityState)
		mu.Unlock()
	})
	h.ReadyAll()
	h.ReadyAll()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != connectivity.Ready {
		t.Fatalf("health listener registered after READY, then ReadyAll twice: got %v, want [READY]", got)
	}
}
