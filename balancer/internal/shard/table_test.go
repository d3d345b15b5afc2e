package shard

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"go.uber.org/goleak"
	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/experimental/balancer/weight"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/fakecc"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recPolicy checks each Update against its own model of the endpoints,
// kept from Added, Removed and Changed alone, and records what its last
// picker was built from.
type recPolicy struct {
	model map[uint64]*Endpoint
	ready map[uint64]*Endpoint // of the last call
	errs  []string
	calls int
}

func (p *recPolicy) SetConfig(serviceconfig.LoadBalancingConfig) error { return nil }

func sameEndpoint(a, b *Endpoint) bool {
	return a.Addr == b.Addr && a.Weight == b.Weight && a.Unweighted == b.Unweighted &&
		a.Instance.Equal(b.Instance) && a.Instance.Registered.Equal(b.Instance.Registered)
}

func (p *recPolicy) fail(format string, args ...any) {
	p.errs = append(p.errs, fmt.Sprintf("Picker call %d: ", p.calls)+fmt.Sprintf(format, args...))
}

type recPicker struct{ ready map[uint64]*Endpoint }

func (*recPicker) Pick(gbalancer.PickInfo) (gbalancer.PickResult, error) {
	return gbalancer.PickResult{}, nil
}

func (p *recPolicy) Picker(u *Update) gbalancer.Picker {
	p.calls++
	for _, e := range u.Removed {
		if p.model[e.ID] == nil {
			p.fail("removed %d (%s), which it did not have", e.ID, e.Addr)
		}
		delete(p.model, e.ID)
	}
	added, changed := map[uint64]bool{}, map[uint64]bool{}
	for _, e := range u.Added {
		if p.model[e.ID] != nil {
			p.fail("added %d (%s) twice", e.ID, e.Addr)
		}
		p.model[e.ID] = e
		added[e.ID] = true
	}
	for _, e := range u.Changed {
		if p.model[e.ID] == nil || added[e.ID] {
			p.fail("changed %d (%s), not in the model or just added", e.ID, e.Addr)
		}
		changed[e.ID] = true
	}
	if len(u.All) != len(p.model) {
		p.fail("%d endpoints in All, %d in the model", len(u.All), len(p.model))
	}
	for _, e := range u.All {
		old := p.model[e.ID]
		if old == nil {
			p.fail("%d (%s) in All, never added", e.ID, e.Addr)
			continue
		}
		if !added[e.ID] && !sameEndpoint(old, e) != changed[e.ID] {
			p.fail("%d (%s): changed is %v, but %+v -> %+v", e.ID, e.Addr, changed[e.ID], *old, *e)
		}
		p.model[e.ID] = e
	}
	p.ready = map[uint64]*Endpoint{}
	for _, e := range u.All {
		if e.Ready() {
			p.ready[e.ID] = e
		}
	}
	if len(u.Ready) != len(p.ready) {
		p.fail("Ready has %d endpoints, All %d ready ones", len(u.Ready), len(p.ready))
	}
	for _, e := range u.Ready {
		if p.ready[e.ID] != e {
			p.fail("Ready has %d (%s, %v), not a ready endpoint of All", e.ID, e.Addr, e.State)
		}
	}
	if len(u.Ready) == 0 {
		return nil
	}
	return &recPicker{ready: p.ready}
}

func unwrap(p gbalancer.Picker) gbalancer.Picker {
	if c, ok := p.(*CountingPicker); ok {
		return c.Picker
	}
	return p
}

// TestFrameMatchesEndpointsharding drives the frame over real
// endpointsharding and pick_first children through random resolver
// updates (endpoints coming, going, re-weighted, with new attribute
// objects or the same), connections and failures, and pick counting
// switched on and off, and checks after each step that the frame's table,
// kept in O(1) per change, is what a full rebuild from endpointsharding's
// list of children gives, that the policy's Updates add up to it, and
// that the published picker was built from the current ready set.
func TestFrameMatchesEndpointsharding(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { checkFrame(t, seed) })
	}
}

func checkFrame(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 22))
	pol := &recPolicy{model: map[uint64]*Endpoint{}}
	var spied gbalancer.State
	var b *Balancer
	h := fakecc.BuildWith(func(cc gbalancer.ClientConn) gbalancer.Balancer {
		b = build(cc, gbalancer.BuildOptions{}, pol, func(s gbalancer.State) { spied = s })
		return b
	}, nil)
	defer h.Close()
	var stopCounting func()
	defer func() {
		if stopCounting != nil {
			stopCounting()
		}
	}()

	const pool = 12
	weights := make([]int, pool)
	eps := make([]gresolver.Endpoint, pool)
	mk := func(i int) gresolver.Endpoint {
		addr := fmt.Sprintf("10.0.0.%d:80", i)
		if i%4 == 3 { // a foreign endpoint with two addresses and grpc's weight
			ep := gresolver.Endpoint{Addresses: []gresolver.Address{{Addr: addr}, {Addr: fmt.Sprintf("10.1.0.%d:80", i)}}}
			return weight.Set(ep, weight.EndpointInfo{Weight: uint32(weights[i])})
		}
		return instance.Endpoint(registry.Instance{ID: fmt.Sprint(i), Service: "s", Address: addr, Weight: weights[i], Zone: fmt.Sprint("z", weights[i]%2)})
	}
	for i := range eps {
		eps[i] = mk(i)
	}
	for step := range 300 {
		var what string
		switch op := rng.IntN(10); {
		case op < 4:
			var set []gresolver.Endpoint
			for i := range eps {
				if rng.IntN(3) > 0 {
					if rng.IntN(4) == 0 {
						weights[i] = rng.IntN(4)
						eps[i] = mk(i) // new attributes, maybe the same values
					}
					set = append(set, eps[i])
				}
			}
			rng.Shuffle(len(set), func(i, j int) { set[i], set[j] = set[j], set[i] })
			what = fmt.Sprintf("update with %d endpoints", len(set))
			_ = h.Update(set) // an empty set is an error, and must still be handled
		case op < 7:
			what = "ready all"
			h.ReadyAll()
		case op < 9:
			i := rng.IntN(pool)
			what = fmt.Sprintf("fail %d", i)
			h.Fail(eps[i].Addresses[0].Addr)
		default:
			if stopCounting == nil {
				what, stopCounting = "count picks", inspect.CountPicks()
			} else {
				what = "stop counting"
				stopCounting()
				stopCounting = nil
			}
			h.ReadyAll()
		}
		for _, e := range pol.errs {
			t.Errorf("step %d (%s): %s", step, what, e)
		}
		if len(pol.errs) > 0 {
			t.FailNow()
		}
		compare(t, fmt.Sprintf("step %d (%s)", step, what), b, pol, spied, h)
	}
}

// compare checks the frame against endpointsharding's last report.
func compare(t *testing.T, at string, b *Balancer, pol *recPolicy, spied gbalancer.State, h *fakecc.Harness) {
	t.Helper()
	children := endpointsharding.ChildStatesFromPicker(spied.Picker)
	b.mu.Lock()
	all := append([]*Endpoint(nil), b.table.all...)
	b.mu.Unlock()
	byAddr := map[string]*Endpoint{}
	for _, e := range all {
		byAddr[e.Addr] = e
	}
	if len(all) != len(children) || len(byAddr) != len(all) {
		t.Fatalf("%s: the frame has %d endpoints (%d addresses), endpointsharding %d children", at, len(all), len(byAddr), len(children))
	}
	wantReady := map[string]gbalancer.Picker{}
	for _, c := range children {
		want := FromChild(c.Endpoint, c.State)
		got := byAddr[want.Addr]
		if got == nil || !sameEndpoint(got, &want) || got.State != want.State || unwrap(got.Picker) != want.Picker {
			t.Fatalf("%s: the frame has %+v for %s, a full rebuild %+v", at, got, want.Addr, want)
		}
		if want.Ready() {
			wantReady[want.Addr] = want.Picker
		}
	}
	p, st := h.CC.Picker()
	if len(wantReady) == 0 {
		if p != spied.Picker {
			t.Fatalf("%s: no endpoint ready, but the frame published %T (%v), not endpointsharding's picker", at, p, st)
		}
		return
	}
	rp, ok := p.(*recPicker)
	if !ok || st != connectivity.Ready {
		t.Fatalf("%s: %d endpoints ready, but the frame published %T (%v), not the policy's picker", at, len(wantReady), p, st)
	}
	if len(rp.ready) != len(wantReady) {
		t.Fatalf("%s: the picker was built from %d ready endpoints, endpointsharding has %d", at, len(rp.ready), len(wantReady))
	}
	for _, e := range rp.ready {
		if w, ok := wantReady[e.Addr]; !ok || unwrap(e.Picker) != w {
			t.Fatalf("%s: the picker was built with %s (picker %p), endpointsharding has it ready: %v", at, e.Addr, e.Picker, ok)
		}
	}
}
