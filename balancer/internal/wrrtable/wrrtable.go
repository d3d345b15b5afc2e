// Package wrrtable builds smooth weighted round-robin schedules: a table
// of endpoint indices in which each endpoint appears in proportion to its
// weight, spread evenly, so that a picker pays one atomic increment and
// one load per pick, whatever the number of endpoints and weights.
package wrrtable

import "math/bits"

// Table is a schedule. Pick with Table.At(counter).
type Table struct {
	idx []uint32 // nil when all weights are equal: plain round robin
	n   uint64
}

// At returns the endpoint index for the i-th pick.
func (t *Table) At(i uint64) uint32 {
	if t.idx == nil {
		return uint32(i % t.n)
	}
	return t.idx[i%uint64(len(t.idx))]
}

// Len returns the schedule's period.
func (t *Table) Len() int {
	if t.idx == nil {
		return int(t.n)
	}
	return len(t.idx)
}

// MaxLen bounds the table for n endpoints: exact weights are kept when
// their reduced sum fits, and otherwise scaled to fit, so memory and
// build time stay O(n).
func MaxLen(n int) int { return max(4096, 16*n) }

// Build returns the schedule for weights (all > 0, at least one).
//
// Endpoint i gets c_i slots, its reduced weight, or its weight scaled to
// MaxLen (at least 1). Its k-th slot goes near position
// L*(k+phase_i)/c_i of the period L, so consecutive picks of one endpoint
// are about L/c_i apart: no bursts. The phases, spread by the golden
// ratio, keep endpoints of equal weight from colliding. Placement is a
// counting sort on those positions, O(L + n).
func Build(weights []uint32) *Table {
	n := len(weights)
	t := &Table{n: uint64(n)}
	g := uint64(0)
	var sum uint64
	allEqual := true
	for _, w := range weights {
		g = gcd(g, uint64(w))
		sum += uint64(w)
		allEqual = allEqual && w == weights[0]
	}
	if allEqual || n == 1 {
		return t
	}
	slots := make([]uint64, n)
	L := sum / g
	if limit := uint64(MaxLen(n)); L > limit {
		L = 0
		for i, w := range weights {
			slots[i] = max(1, (uint64(w)*limit+sum/2)/sum)
			L += slots[i]
		}
	} else {
		for i, w := range weights {
			slots[i] = uint64(w) / g
		}
	}
	// pos returns the bucket of endpoint i's k-th slot. The phase is a
	// fixed-point fraction of 2^32.
	pos := func(i int, k uint64) uint64 {
		phase := uint64(uint32(uint64(i) * 0x9E3779B9))
		hi, lo := bits.Mul64(k<<32+phase, L)
		q, _ := bits.Div64(hi, lo, slots[i]) // < L<<32: no overflow
		return q >> 32
	}
	// Counting sort: count per bucket, prefix sums, place.
	start := make([]uint32, L+1)
	for i := range n {
		for k := range slots[i] {
			start[pos(i, k)+1]++
		}
	}
	for b := uint64(1); b <= L; b++ {
		start[b] += start[b-1]
	}
	t.idx = make([]uint32, L)
	for i := range n {
		for k := range slots[i] {
			b := pos(i, k)
			t.idx[start[b]] = uint32(i)
			start[b]++
		}
	}
	return t
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
