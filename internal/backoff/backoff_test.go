package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelayBounds(t *testing.T) {
	base, max := 50*time.Millisecond, time.Second
	for n := 1; n <= 10; n++ {
		want := min(base<<(n-1), max)
		for range 200 {
			if d := Delay(n, base, max); d < want/2 || d > want {
				t.Fatalf("Delay(%d, %v, %v) = %v, want in [%v, %v]", n, base, max, d, want/2, want)
			}
		}
	}
	if d := Delay(0, base, max); d > base {
		t.Fatalf("Delay(0) = %v, want <= %v", d, base)
	}
}

func TestBackoffReset(t *testing.T) {
	b := Backoff{Base: 10 * time.Millisecond, Max: time.Second}
	for range 5 {
		b.Next()
	}
	if b.Failures() != 5 {
		t.Fatalf("Failures() = %d, want 5", b.Failures())
	}
	b.Reset()
	if d := b.Next(); d > 10*time.Millisecond {
		t.Fatalf("Next() after Reset = %v, want <= 10ms", d)
	}
}

func TestSleepCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep(cancelled, 1h) = true, want false")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep(1ms) = false, want true")
	}
}
