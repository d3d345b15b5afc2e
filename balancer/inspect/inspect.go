// Package inspect lets debug pages see inside Wayfinder's load-balancing
// policies: each live balancer registers a function describing its
// endpoints — address, instance, connectivity state, weight and
// policy-specific statistics such as P2C's EWMA and in-flight calls.
//
// Describing is on demand: nothing is computed on the pick path.
package inspect

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Endpoint describes one endpoint of a balancer.
type Endpoint struct {
	Addr     string            `json:"addr"`
	Instance string            `json:"instance,omitempty"` // registry instance ID, if known
	Zone     string            `json:"zone,omitempty"`
	State    string            `json:"state"` // the pick_first child's connectivity state
	Weight   uint32            `json:"weight"`
	Stats    map[string]string `json:"stats,omitempty"` // policy-specific, such as "ewma_ms" or "inflight"
}

// Balancer describes one live balancer (one per ClientConn using a
// Wayfinder policy).
type Balancer struct {
	ID        uint64     `json:"id"`
	Target    string     `json:"target"`
	Policy    string     `json:"policy"`
	Endpoints []Endpoint `json:"endpoints"`
}

type entry struct {
	target, policy string
	describe       func() []Endpoint
}

var (
	mu      sync.Mutex
	live    = map[uint64]entry{}
	counter atomic.Uint64
)

// Register adds a live balancer; call the returned function when it
// closes.
func Register(target, policy string, describe func() []Endpoint) (unregister func()) {
	id := counter.Add(1)
	mu.Lock()
	live[id] = entry{target: target, policy: policy, describe: describe}
	mu.Unlock()
	return func() {
		mu.Lock()
		delete(live, id)
		mu.Unlock()
	}
}

// Balancers describes every live balancer, sorted by target then ID.
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
	out := make([]Balancer, 0, len(ids))
	for _, id := range ids {
		e := entries[id]
		out = append(out, Balancer{ID: id, Target: e.target, Policy: e.policy, Endpoints: e.describe()})
	}
	slices.SortStableFunc(out, func(a, b Balancer) int { return strings.Compare(a.Target, b.Target) })
	return out
}
