//go:build unix

package testenv

import "testing"

// TestFreePortReserved: a port FreePort handed out is locked, and a second
// lock on it (another open file, as another process would take) fails,
// so no other test process hands it out while this one lives.
func TestFreePortReserved(t *testing.T) {
	p := FreePort(t)
	if reservePort(p) {
		t.Fatalf("port %d handed out by FreePort could be reserved again", p)
	}
}
