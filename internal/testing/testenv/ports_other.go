//go:build !unix

package testenv

// reservePort has no cross-process lock off unix: the bind check alone.
func reservePort(int) bool { return true }
