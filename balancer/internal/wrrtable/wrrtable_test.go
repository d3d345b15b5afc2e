package wrrtable

import (
	"math/rand/v2"
	"testing"
)

func TestBuildShares(t *testing.T) {
	for _, ws := range [][]uint32{{1, 2, 3}, {1, 1}, {5}, {1, 1000000}, {3, 3, 6}, {7, 11, 13, 1}} {
		tb := Build(ws)
		counts := make([]int, len(ws))
		for i := range tb.Len() {
			counts[tb.At(uint64(i))]++
		}
		var sum uint32
		for _, w := range ws {
			sum += w
		}
		for i, w := range ws {
			want := float64(w) / float64(sum) * float64(tb.Len())
			if d := float64(counts[i]) - want; d > 1 || d < -1 {
				t.Errorf("Build(%v): endpoint %d has %d of %d slots, want %.1f", ws, i, counts[i], tb.Len(), want)
			}
		}
	}
}

// TestBuildSmooth checks there are no bursts: in 1:2:3, no endpoint is
// picked more than twice in a row, and the heaviest is never absent from
// any window of 3.
func TestBuildSmooth(t *testing.T) {
	tb := Build([]uint32{1, 2, 3})
	var seq []uint32
	for i := range 2 * tb.Len() {
		seq = append(seq, tb.At(uint64(i)))
	}
	for i := 2; i < len(seq); i++ {
		if seq[i] == seq[i-1] && seq[i] == seq[i-2] {
			t.Fatalf("Build({1,2,3}) schedule %v has a burst of 3 at %d", seq, i)
		}
		if seq[i] != 2 && seq[i-1] != 2 && seq[i-2] != 2 {
			t.Fatalf("Build({1,2,3}) schedule %v skips weight 3 for 3 picks at %d", seq, i)
		}
	}
}

// TestBuildScaled covers weights whose exact period exceeds MaxLen.
func TestBuildScaled(t *testing.T) {
	ws := make([]uint32, 1000)
	for i := range ws {
		ws[i] = uint32(rand.IntN(1000000) + 1)
	}
	tb := Build(ws)
	if tb.Len() > MaxLen(len(ws))+len(ws) {
		t.Fatalf("Build(1000 random weights).Len() = %d, want <= %d", tb.Len(), MaxLen(len(ws))+len(ws))
	}
	counts := make([]int, len(ws))
	for i := range tb.Len() {
		counts[tb.At(uint64(i))]++
	}
	for i, c := range counts {
		if c == 0 {
			t.Fatalf("endpoint %d (weight %d) has no slot", i, ws[i])
		}
	}
}
