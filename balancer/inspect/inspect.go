// Package inspect lets debug pages and metrics see inside Wayfinder's
// load-balancing policies: each live balancer registers a function
// describing itself and its endpoints — address, instance, connectivity
// state, weight, calls picked, and policy-specific statistics such as
// P2C's EWMA and in-flight calls or outlier ejection's state.
//
// Describing is on demand: nothing is computed on the pick path. The one
// exception is opt-in: while CountPicks is in effect, balancers count
// the calls they pick for each endpoint, one atomic add per pick.
package inspect

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Endpoint describes one endpoint of a balancer.
type Endpoint struct {
	Addr     string `json:"addr"`
	Instance string `json:"instance,omitempty"` // registry instance ID, if known
	Zone     string `json:"zone,omitempty"`
	State    string `json:"state"` // connectivity state, such as READY or TRANSIENT_FAILURE
	Weight   uint32 `json:"weight"`
	// Picks is the number of calls picked for the endpoint while the
	// balancer counted picks (Balancer.CountsPicks); since the endpoint
	// was last added.
	Picks   uint64            `json:"picks,omitempty"`
	Ejected bool              `json:"ejected,omitempty"` // taken out by outlier ejection
	Stats   map[string]string `json:"stats,omitempty"`   // policy-specific, such as "ewma_ms" or "inflight"
}

// Balancer describes one live balancer (one per ClientConn using a
// Wayfinder policy, and one per Wayfinder policy nested inside another).
type Balancer struct {
	ID uint64 `json:"id"`
	// Target is the ClientConn's target in canonical form, as
	// grpc.ClientConn.CanonicalTarget returns it: with the scheme gRPC
	// added, if the dial target had none ("dns:///host:port").
	Target string `json:"target"`
	Policy string `json:"policy"`
	// Parent is the ID of the Wayfinder policy (outlier ejection or
	// zone-aware) this one runs inside on the same ClientConn, 0 for a
	// ClientConn's top policy. The parent counts the picks.
	Parent uint64 `json:"parent,omitempty"`
	// CountsPicks reports that the balancer counted picks when it last
	// built a picker: CountPicks was in effect and it has no parent.
	CountsPicks bool `json:"counts_picks,omitempty"`
	// Picks is the total of the endpoints' picks, including those of
	// endpoints since removed.
	Picks uint64 `json:"picks,omitempty"`
	// Ejections counts outlier ejections since the balancer started.
	Ejections uint64            `json:"ejections,omitempty"`
	Stats     map[string]string `json:"stats,omitempty"` // policy-specific, such as zone-aware's local zone
	Endpoints []Endpoint        `json:"endpoints"`
}

type entry struct {
	target, policy string
	parent         uint64
	describe       func(*Balancer)
}

var (
	mu      sync.Mutex
	live    = map[uint64]entry{}
	counter atomic.Uint64

	counting atomic.Int64 // CountPicks calls in effect
)

// Register adds a live balancer running inside the balancer whose ID is
// parent, or at the top of its ClientConn if parent is 0; call
// unregister when it closes. describe fills in everything but ID,
// Target, Policy and Parent; it is called on demand, never on the pick
// path.
func Register(target, policy string, parent uint64, describe func(*Balancer)) (id uint64, unregister func()) {
	id = counter.Add(1)
	mu.Lock()
	live[id] = entry{target: target, policy: policy, parent: parent, describe: describe}
	mu.Unlock()
	return id, func() {
		mu.Lock()
		delete(live, id)
		mu.Unlock()
	}
}

// Balancers describes every live balancer, sorted by target, then each
// ClientConn's top policy by ID, each followed by the policies inside it.
func Balancers() []Balancer {
	mu.Lock()
	ids := make([]uint64, 0, len(live))
	entries := make(map[uint64]entry, len(live))
	for id, e := range live {
		ids = append(ids, id)
		entries[id] = e
	}
	mu.Unlock()
	slices.Sort(ids)
	children := map[uint64][]uint64{} // by parent, in ID order; 0 holds the top policies
	for _, id := range ids {
		p := entries[id].parent
		if _, ok := entries[p]; !ok {
			p = 0 // the parent closed first
		}
		children[p] = append(children[p], id)
	}
	out := make([]Balancer, 0, len(ids))
	var walk func(id uint64)
	walk = func(id uint64) {
		e := entries[id]
		b := Balancer{}
		e.describe(&b)
		b.ID, b.Target, b.Policy, b.Parent = id, e.target, e.policy, e.parent
		if b.Endpoints == nil {
			b.Endpoints = []Endpoint{}
		}
		out = append(out, b)
		for _, c := range children[id] {
			walk(c)
		}
	}
	for _, id := range children[0] {
		walk(id)
	}
	// Stable: a child keeps its parent's target, so stays below it.
	slices.SortStableFunc(out, func(a, b Balancer) int { return strings.Compare(a.Target, b.Target) })
	return out
}

// CountPicks makes Wayfinder's balancers count the calls they pick for
// each endpoint, from the next picker each builds (pickers are rebuilt
// when endpoints or their states change), until every stop returned by
// CountPicks has been called. Counting costs one atomic add per pick on
// a counter per endpoint; without it the pick path is unchanged.
// lbmetrics.WithPickCounts calls it.
func CountPicks() (stop func()) {
	counting.Add(1)
	var once sync.Once
	return func() { once.Do(func() { counting.Add(-1) }) }
}

// CountingPicks reports whether CountPicks is in effect. Balancers read
// it when they build a picker, never on the pick path.
func CountingPicks() bool { return counting.Load() > 0 }
