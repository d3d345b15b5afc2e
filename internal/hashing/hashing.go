// Package hashing is the fixed string hash shared by the consistent-hash
// policy and the resolver's subsetting: FNV-1a, then MurmurHash3's 64-bit
// finalizer. It is the same in every process (hash/maphash is seeded per
// process), and the finalizer fixes FNV's weak low bits for short,
// similar strings such as numbered IDs.
package hashing

// Offset is FNV-1a's initial value: String(s) is Mix(Add(Offset, s)).
const Offset uint64 = 14695981039346656037

const prime = 1099511628211

// Add continues an FNV-1a hash h over s.
func Add(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return h
}

// Mix is MurmurHash3's fmix64.
func Mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// String hashes s.
func String(s string) uint64 { return Mix(Add(Offset, s)) }
