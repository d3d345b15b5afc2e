package resolver

import (
	"cmp"
	"os"
	"slices"

	"github.com/wayfinder-rpc/wayfinder/internal/hashing"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// WithConnectionSubset makes each ClientConn of the builder connect to at
// most size of a service's instances, so that large fleets of clients and
// servers do not form a full mesh of connections. (To route calls to the
// instances that match a selector, see balancer/route instead.)
//
// The subset is chosen by rendezvous hashing of key with each instance's
// ID, which makes it deterministic and stable, unlike a random subset
// drawn anew on every change:
//   - the same key and instances give the same subset, in any process;
//   - an instance leaving a subset is replaced by exactly one other, an
//     instance joining enters only the subsets where it ranks, and every
//     other member stays, so a change reconnects as little as possible;
//   - over many keys, each instance is in about size/N of the subsets.
//
// Use a key that is stable across restarts and distinct per client
// process, such as the pod name; an empty key means the host name.
// Weights are not considered: balance within the subset is the policy's
// job. size <= 0 turns subsetting off, the default.
func WithConnectionSubset(size int, key string) Option {
	return func(b *Builder) {
		if key == "" {
			key, _ = os.Hostname()
		}
		b.subsetSize, b.subsetKey = size, key
	}
}

// ConnectionSubset returns the at most size instances of insts that a
// client with key keeps under WithConnectionSubset, in their order in
// insts. It returns insts itself when no subsetting applies.
func ConnectionSubset(insts []registry.Instance, size int, key string) []registry.Instance {
	if size <= 0 || len(insts) <= size {
		return insts
	}
	type ranked struct {
		score uint64
		i     int
	}
	kh := hashing.Add(hashing.Add(hashing.Offset, key), "\x00")
	rs := make([]ranked, len(insts))
	for i, in := range insts {
		rs[i] = ranked{hashing.Mix(hashing.Add(kh, in.ID)), i}
	}
	// Highest score first; IDs are unique within a service, so ties
	// (a 64-bit collision) fall back to the order in insts.
	slices.SortFunc(rs, func(a, b ranked) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	keep := rs[:size]
	slices.SortFunc(keep, func(a, b ranked) int { return cmp.Compare(a.i, b.i) })
	out := make([]registry.Instance, size)
	for j, r := range keep {
		out[j] = insts[r.i]
	}
	return out
}
