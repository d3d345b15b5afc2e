package p2c

import _ "unsafe" // for go:linkname

// cheaprand64 is the runtime's per-thread wyrand, 63 random bits: no
// lock, no shared state, a few instructions, where math/rand/v2's
// Uint64 costs three calls into ChaCha8, a fifth of a whole pick. P2C
// needs a fair coin, not a cryptographic one. The runtime keeps this
// symbol for the packages that link to it (see its "hall of shame").
//
//go:linkname cheaprand64 runtime.cheaprand64
func cheaprand64() int64
