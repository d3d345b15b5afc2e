package hash

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
)

// fullRing is the ring built from scratch, as the policy did before it
// kept the ring across updates: the reference ringBuilder must match.
func fullRing(members []shard.Endpoint, replicas, maxSize int) (hashes []uint64, owners []string) {
	slices.SortFunc(members, func(a, b shard.Endpoint) int { return strings.Compare(a.Addr, b.Addr) })
	var wsum float64
	for _, m := range members {
		wsum += float64(m.Weight)
	}
	scale := float64(replicas) * float64(len(members)) / wsum
	total := 0.0
	for _, m := range members {
		total += max(1, math.Round(float64(m.Weight)*scale))
	}
	if total > float64(maxSize) {
		scale *= float64(maxSize) / total
	}
	type pt struct {
		h uint64
		o int
	}
	var pts []pt
	for i, m := range members {
		base := hashString(m.Addr)
		for k := range int(max(1, math.Round(float64(m.Weight)*scale))) {
			pts = append(pts, pt{mixPoint(base + uint64(k)*0x9E3779B97F4A7C15), i})
		}
	}
	slices.SortFunc(pts, func(a, b pt) int {
		if a.h != b.h {
			if a.h < b.h {
				return -1
			}
			return 1
		}
		return strings.Compare(members[a.o].Addr, members[b.o].Addr)
	})
	for _, p := range pts {
		hashes = append(hashes, p.h)
		owners = append(owners, members[p.o].Addr)
	}
	return hashes, owners
}

// TestRingMatchesFullRebuild applies random changes (endpoints added and
// removed, weights and addresses changed, replicas and the size cap
// changed, several at once or none) to a ringBuilder and checks after
// each that its ring is, point for point, the ring built from scratch.
func TestRingMatchesFullRebuild(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		var rb ringBuilder
		live := map[uint64]*shard.Endpoint{}
		nextID := uint64(0)
		replicas, maxSize := 1+rng.IntN(50), 1<<18
		newEp := func() *shard.Endpoint {
			nextID++
			return &shard.Endpoint{ID: nextID, Addr: fmt.Sprintf("10.0.%d.%d:80", rng.IntN(4), rng.IntN(256)), Weight: uint32(1 + rng.IntN(5))}
		}
		for step := range 60 {
			var u shard.Update
			for range rng.IntN(4) {
				e := newEp()
				if slices.ContainsFunc(slices.Collect(mapValues(live)), func(o *shard.Endpoint) bool { return o.Addr == e.Addr }) {
					continue // first addresses are distinct in these tests
				}
				live[e.ID] = e
				u.Added = append(u.Added, e)
			}
			for id, e := range live {
				if slices.Contains(u.Added, e) {
					continue
				}
				switch rng.IntN(12) {
				case 0:
					delete(live, id)
					u.Removed = append(u.Removed, e)
				case 1, 2:
					n := *e
					n.Weight = uint32(1 + rng.IntN(5))
					if rng.IntN(3) == 0 {
						n.Addr = fmt.Sprintf("10.9.%d.%d:80", step, id)
					}
					live[id] = &n
					u.Changed = append(u.Changed, &n)
				}
			}
			switch rng.IntN(10) {
			case 0:
				replicas = 1 + rng.IntN(50)
			case 1:
				maxSize = 1 + rng.IntN(200)
			case 2:
				maxSize = 1 << 18
			}
			for e := range mapValues(live) {
				u.All = append(u.All, e)
			}
			rb.apply(&u, replicas, maxSize)
			rb.rebuild()
			var members []shard.Endpoint
			for _, e := range u.All {
				members = append(members, *e)
			}
			wantH, wantO := fullRing(members, replicas, maxSize)
			got := rb.ring
			if len(got.hashes) != len(wantH) {
				t.Fatalf("seed %d step %d: ring of %d points, full rebuild %d", seed, step, len(got.hashes), len(wantH))
			}
			for i := range wantH {
				if got.hashes[i] != wantH[i] || rb.slots[got.owners[i]].addr != wantO[i] {
					t.Fatalf("seed %d step %d: point %d is %x of %s, full rebuild %x of %s", seed, step, i, got.hashes[i], rb.slots[got.owners[i]].addr, wantH[i], wantO[i])
				}
			}
		}
	}
}

func mapValues[K comparable, V any](m map[K]V) func(func(V) bool) {
	return func(yield func(V) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}
