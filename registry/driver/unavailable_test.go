package driver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// TestClassify reads the cause from real network errors: a dial to a
// loopback port nothing listens on, and a read from a listener that
// accepts and never answers.
func TestClassify(t *testing.T) {
	refused := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	_, errRefused := net.Dial("tcp", refused)
	if errRefused == nil {
		t.Fatalf("net.Dial(%s) succeeded; want a refusal", refused)
	}

	c, err := net.Dial("tcp", registrytest.NewFrozenListener(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, errFrozen := c.Read(make([]byte, 1))

	for _, tc := range []struct {
		name string
		err  error
		want registry.Cause
	}{
		{"refused", errRefused, registry.CauseRefused},
		{"frozen read", errFrozen, registry.CauseNoAnswer},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), registry.CauseNoAnswer},
		{"other", errors.New("boom"), registry.CauseUnknown},
		{"canceled", context.Canceled, registry.CauseUnknown},
		{"already classified", &registry.UnavailableError{Cause: registry.CauseNotRegistry}, registry.CauseNotRegistry},
	} {
		if got := driver.Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestUnavailable(t *testing.T) {
	if err := driver.Unavailable("etcd://127.0.0.1:2379", "lookup", time.Second, nil); err != nil {
		t.Fatalf("Unavailable(nil) = %v, want nil", err)
	}
	cause := fmt.Errorf("get: %w", context.DeadlineExceeded)
	err := driver.Unavailable("etcd://127.0.0.1:2379", `lookup "hello"`, 5*time.Second, cause)
	var ue *registry.UnavailableError
	if !errors.As(err, &ue) || ue.Cause != registry.CauseNoAnswer || ue.Bound != 5*time.Second {
		t.Fatalf("Unavailable(deadline) = %#v, want CauseNoAnswer with the bound", err)
	}
	if !errors.Is(err, registry.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Unavailable(deadline) = %v, want it to wrap ErrUnavailable and the cause", err)
	}
	for _, want := range []string{"etcd://127.0.0.1:2379", `lookup "hello"`, "no answer within 5s", "deadline exceeded"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Unavailable(deadline).Error() = %q, want it to contain %q", err, want)
		}
	}
	if again := driver.Unavailable("other://", "op", 0, err); again != err {
		t.Errorf("Unavailable(an UnavailableError) = %v, want it unchanged", again)
	}
	refused := driver.Unavailable("consul://127.0.0.1:1", "register", time.Second, &net.OpError{Op: "dial", Err: errors.New("x")})
	if errors.As(refused, &ue); ue.Bound != 0 {
		t.Errorf("Unavailable(unknown cause).Bound = %v, want 0 (a bound is only said of no answer)", ue.Bound)
	}
}
