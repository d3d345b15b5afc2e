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

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/testing/fakecc"
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
