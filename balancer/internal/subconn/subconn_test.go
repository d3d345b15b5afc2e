package subconn

import (
	"fmt"
	"slices"
	"testing"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
	gresolver "google.golang.org/grpc/resolver"
)

// parentCC records the SubConns the frame asks for.
type parentCC struct {
	gbalancer.ClientConn // nil; only the methods below are called
	subConns             []*parentSC
	removed, updated     []gbalancer.SubConn
}

type parentSC struct {
	gbalancer.SubConn // nil
	state             func(gbalancer.SubConnState)
	health            func(gbalancer.SubConnState)
}

func (s *parentSC) RegisterHealthListener(l func(gbalancer.SubConnState)) { s.health = l }

func (c *parentCC) NewSubConn(_ []gresolver.Address, opts gbalancer.NewSubConnOptions) (gbalancer.SubConn, error) {
	sc := &parentSC{state: opts.StateListener}
	c.subConns = append(c.subConns, sc)
	return sc, nil
}

func (c *parentCC) RemoveSubConn(sc gbalancer.SubConn) { c.removed = append(c.removed, sc) }

func (c *parentCC) UpdateAddresses(sc gbalancer.SubConn, _ []gresolver.Address) {
	c.updated = append(c.updated, sc)
}

func state(s connectivity.State) gbalancer.SubConnState {
	return gbalancer.SubConnState{ConnectivityState: s}
}

// TestFrame: hooks see every update in order, the child gets what the
// hooks let through, and health updates for a listener that no longer
// lives reach neither.
func TestFrame(t *testing.T) {
	parent := &parentCC{}
	var log []string
	withhold := false
	cc := &ClientConn[string]{ClientConn: parent, Hooks: Hooks[string]{
		Created: func(sc *SubConn[string], addrs []gresolver.Address) { sc.Data = addrs[0].Addr },
		Deliver: func(sc *SubConn[string], f func()) {
			log = append(log, "deliver")
			f()
		},
		State: func(sc *SubConn[string], s gbalancer.SubConnState) {
			log = append(log, fmt.Sprintf("state %s %v", sc.Data, s.ConnectivityState))
		},
		HealthRegistered: func(sc *SubConn[string], l func(gbalancer.SubConnState)) {
			log = append(log, fmt.Sprintf("registered %v", l != nil))
		},
		Health: func(sc *SubConn[string], s gbalancer.SubConnState) bool {
			log = append(log, fmt.Sprintf("health %v", s.ConnectivityState))
			return !withhold
		},
	}}
	var child []string
	sc, err := cc.NewSubConn([]gresolver.Address{{Addr: "a:1"}}, gbalancer.NewSubConnOptions{StateListener: func(s gbalancer.SubConnState) {
		child = append(child, "state "+s.ConnectivityState.String())
	}})
	if err != nil {
		t.Fatalf("NewSubConn = %v", err)
	}
	p := parent.subConns[0]
	if got := Unwrap[string](sc); got != p {
		t.Fatalf("Unwrap(wrapped) = %v, want the parent's SubConn %v", got, p)
	}
	if got := Unwrap[string](p); got != p {
		t.Fatalf("Unwrap(parent's) = %v, want it unchanged", got)
	}
	cc.RemoveSubConn(sc)
	cc.UpdateAddresses(sc, nil)
	if len(parent.removed) != 1 || parent.removed[0] != p || len(parent.updated) != 1 || parent.updated[0] != p {
		t.Fatalf("RemoveSubConn, UpdateAddresses passed %v, %v to the parent, want its own SubConn", parent.removed, parent.updated)
	}

	p.state(state(connectivity.Ready))
	childHealth := func(s gbalancer.SubConnState) { child = append(child, "health "+s.ConnectivityState.String()) }
	sc.RegisterHealthListener(childHealth)
	first := p.health
	first(state(connectivity.Ready))
	withhold = true
	first(state(connectivity.TransientFailure)) // withheld by the hook
	withhold = false
	sc.RegisterHealthListener(childHealth) // a new registration ends the first
	first(state(connectivity.Connecting))  // stale: dropped
	second := p.health
	p.state(state(connectivity.Idle)) // leaving READY ends the second
	second(state(connectivity.Ready)) // stale: dropped
	sc.RegisterHealthListener(nil)
	if p.health != nil {
		t.Errorf("RegisterHealthListener(nil) registered %p with the parent, want nil", p.health)
	}

	wantLog := []string{
		"deliver", "state a:1 READY",
		"registered true",
		"deliver", "health READY",
		"deliver", "health TRANSIENT_FAILURE",
		"registered true",
		"deliver",
		"deliver", "state a:1 IDLE",
		"deliver",
		"registered false",
	}
	if !slices.Equal(log, wantLog) {
		t.Errorf("hooks saw\n%q\nwant\n%q", log, wantLog)
	}
	wantChild := []string{"state READY", "health READY", "state IDLE"}
	if !slices.Equal(child, wantChild) {
		t.Errorf("child saw %q, want %q", child, wantChild)
	}
}

func TestIndex(t *testing.T) {
	type rec struct {
		first   string
		updates int
	}
	ep := func(addrs ...string) gresolver.Endpoint {
		var e gresolver.Endpoint
		for _, a := range addrs {
			e.Addresses = append(e.Addresses, gresolver.Address{Addr: a})
		}
		return e
	}
	kept := &rec{first: "b"}
	old := map[string]*rec{"b": kept, "x": {first: "x"}}
	made := []string{}
	byAddr, recs := Index([]gresolver.Endpoint{
		ep("a", "a2"),
		ep(),          // no address: skipped
		ep("b", "a2"), // kept from old; a2 is already a's
		ep("a", "c"),  // first address taken: skipped
		ep("c"),
	}, old, func(addr string) *rec { made = append(made, addr); return &rec{first: addr} }, func(r *rec, _ gresolver.Endpoint) { r.updates++ })
	if !slices.Equal(made, []string{"a", "c"}) {
		t.Errorf("Index made records for %v, want [a c]", made)
	}
	var firsts []string
	for _, r := range recs {
		firsts = append(firsts, r.first)
		if r.updates != 1 {
			t.Errorf("Index updated the record of %q %d times, want once", r.first, r.updates)
		}
	}
	if !slices.Equal(firsts, []string{"a", "b", "c"}) || recs[1] != kept {
		t.Errorf("Index records = %v, want a, b (kept from old), c", firsts)
	}
	want := map[string]string{"a": "a", "a2": "a", "b": "b", "c": "c"}
	if len(byAddr) != len(want) {
		t.Errorf("Index maps %d addresses, want %d", len(byAddr), len(want))
	}
	for addr, first := range want {
		if r := byAddr[addr]; r == nil || r.first != first {
			t.Errorf("Index()[%q] = %v, want the record of %q", addr, r, first)
		}
	}
}
