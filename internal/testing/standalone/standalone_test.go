package standalone

import (
	"strings"
	"testing"
)

func TestTBFatal(t *testing.T) {
	tb := New("x", nil)
	cleaned := false
	tb.Cleanup(func() { cleaned = true })
	err := Do(tb, func() { tb.Fatalf("boom %d", 1) })
	if err == nil || !strings.Contains(err.Error(), "boom 1") {
		t.Errorf("Do(Fatalf) = %v, want an error with the message", err)
	}
	tb.Close()
	if !cleaned {
		t.Errorf("Close did not run the cleanup")
	}
	if err := Do(New("y", nil), func() {}); err != nil {
		t.Errorf("Do(nothing) = %v", err)
	}
}

// TestZeroTB: the zero TB is what TestMain uses.
func TestZeroTB(t *testing.T) {
	var tb TB
	cleaned := false
	tb.Cleanup(func() { cleaned = true })
	tb.Logf("discarded")
	if tb.Context().Err() != nil {
		t.Errorf("Context().Err() = %v, want nil", tb.Context().Err())
	}
	func() {
		defer func() {
			if r, _ := recover().(error); r == nil || r.Error() != "boom 2" {
				t.Errorf("Fatalf outside Do panicked with %v, want an error \"boom 2\"", r)
			}
		}()
		tb.Fatalf("boom %d", 2)
	}()
	tb.Close()
	if !cleaned {
		t.Errorf("Close did not run the cleanup")
	}
}
