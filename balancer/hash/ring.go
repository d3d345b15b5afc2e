package hash

import (
	"math"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
)

// ring is immutable once built: the points of every member, sorted by
// hash, then by the owner's address.
type ring struct {
	hashes []uint64 // sorted
	owners []uint32 // owner indices (ringBuilder.slots)
}

// search returns the index of the first point at or after h, wrapping.
func (r *ring) search(h uint64) int {
	lo, hi := 0, len(r.hashes)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.hashes[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(r.hashes) {
		return 0
	}
	return lo
}

// member is the policy's record of one endpoint (its shard.Endpoint.Data).
type member struct {
	cur      *slot        // its points on the ring
	inflight atomic.Int64 // bounded load: its calls in flight
}

// slot is one address's share of the ring, owner index idx.
type slot struct {
	idx    uint32
	addr   string
	base   uint64 // hashString(addr)
	weight uint32
	count  int  // its points on the ring
	live   bool // false once its member left or changed address
}

// pointHash is a member's k-th point: it depends only on the member's
// address, so that points do not move when other members come or go, and
// removing one of N members moves only the keys it owned, about 1/N.
func pointHash(base uint64, k int) uint64 {
	return mixPoint(base + uint64(k)*0x9E3779B97F4A7C15)
}

// pointsFor returns how many points a member of weight w gets: replicas
// for a member of average weight, at least 1, all scaled down to fit
// maxSize. Sums of integer weights and counts are exact in float64, so
// the result does not depend on the members' order.
func pointsFor(weights []uint32, replicas, maxSize int) func(w uint32) int {
	var wsum uint64
	for _, w := range weights {
		wsum += uint64(w)
	}
	scale := float64(replicas) * float64(len(weights)) / float64(wsum)
	total := 0.0
	for _, w := range weights {
		total += max(1, math.Round(float64(w)*scale))
	}
	if total > float64(maxSize) {
		scale *= float64(maxSize) / total
	}
	return func(w uint32) int { return int(max(1, math.Round(float64(w)*scale))) }
}

// ringBuilder keeps the ring up to date with the endpoints. A change of
// membership costs one pass copying the ring's arrays and hashing and
// sorting only the points that change, instead of hashing and sorting
// every point again: the ring of 5,000 endpoints has 500,000.
type ringBuilder struct {
	replicas, maxSize int
	slots             []*slot // by owner index; nil when free
	free              []uint32
	dead              []*slot // left since the last rebuild; their indices are reused only after it
	ring              *ring
	dirty             bool // membership, weights or sizes changed since ring
}

// apply records u's changes of membership, addresses and weights, and
// the ring's sizes; rebuild then remakes the ring.
func (rb *ringBuilder) apply(u *shard.Update, replicas, maxSize int) {
	if replicas != rb.replicas || maxSize != rb.maxSize {
		rb.replicas, rb.maxSize, rb.dirty = replicas, maxSize, true
	}
	for _, e := range u.Removed {
		rb.kill(e.Data.(*member).cur)
	}
	for _, e := range u.Changed {
		m := e.Data.(*member)
		switch {
		case m.cur.addr != e.Addr: // other points: a new owner
			rb.kill(m.cur)
			m.cur = rb.alloc(e.Addr, e.Weight)
		case m.cur.weight != e.Weight:
			m.cur.weight = e.Weight
			rb.dirty = true
		}
	}
	for _, e := range u.Added {
		e.Data = &member{cur: rb.alloc(e.Addr, e.Weight)}
	}
}

func (rb *ringBuilder) kill(s *slot) {
	s.live = false
	rb.dead = append(rb.dead, s)
	rb.dirty = true
}

func (rb *ringBuilder) alloc(addr string, w uint32) *slot {
	s := &slot{addr: addr, base: hashString(addr), weight: w, live: true}
	if n := len(rb.free); n > 0 {
		s.idx = rb.free[n-1]
		rb.free = rb.free[:n-1]
		rb.slots[s.idx] = s
	} else {
		s.idx = uint32(len(rb.slots))
		rb.slots = append(rb.slots, s)
	}
	rb.dirty = true
	return s
}

type point struct {
	h uint64
	o uint32
}

// rebuild remakes the ring from the old one if anything changed: it drops
// the points of dead slots and those past a slot's new count, and merges
// in the new points, sorted, in one pass.
func (rb *ringBuilder) rebuild() {
	if !rb.dirty {
		return
	}
	var weights []uint32
	for _, s := range rb.slots {
		if s != nil && s.live {
			weights = append(weights, s.weight)
		}
	}
	count := func(uint32) int { return 0 }
	if len(weights) > 0 {
		count = pointsFor(weights, rb.replicas, rb.maxSize)
	}
	gone := make([]bool, len(rb.slots)) // by owner index: every point leaves
	size := 0
	if rb.ring != nil {
		size = len(rb.ring.hashes)
	}
	for _, s := range rb.dead {
		gone[s.idx] = true
		size -= s.count
	}
	trimmed := map[point]bool{} // single points that leave
	var add []point
	for _, s := range rb.slots {
		if s == nil || !s.live {
			continue
		}
		c := count(s.weight)
		for k := c; k < s.count; k++ {
			trimmed[point{pointHash(s.base, k), s.idx}] = true
		}
		for k := s.count; k < c; k++ {
			add = append(add, point{pointHash(s.base, k), s.idx})
		}
		size += c - s.count
		s.count = c
	}
	less := func(a, b point) int {
		if a.h != b.h {
			if a.h < b.h {
				return -1
			}
			return 1
		}
		return strings.Compare(rb.slots[a.o].addr, rb.slots[b.o].addr)
	}
	slices.SortFunc(add, less)
	out := &ring{hashes: make([]uint64, 0, size), owners: make([]uint32, 0, size)}
	j := 0
	if old := rb.ring; old != nil {
		for i, h := range old.hashes {
			o := old.owners[i]
			if gone[o] || len(trimmed) > 0 && trimmed[point{h, o}] {
				continue
			}
			for j < len(add) && less(add[j], point{h, o}) < 0 {
				out.hashes, out.owners = append(out.hashes, add[j].h), append(out.owners, add[j].o)
				j++
			}
			out.hashes, out.owners = append(out.hashes, h), append(out.owners, o)
		}
	}
	for ; j < len(add); j++ {
		out.hashes, out.owners = append(out.hashes, add[j].h), append(out.owners, add[j].o)
	}
	rb.ring = out
	for _, s := range rb.dead {
		rb.slots[s.idx] = nil
		rb.free = append(rb.free, s.idx)
	}
	clear(rb.dead)
	rb.dead = rb.dead[:0]
	rb.dirty = false
}
