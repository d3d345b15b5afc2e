package driver

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Unavailable returns err as a *registry.UnavailableError for the
// registry named name (its redacted URL) and the operation op, with the
// cause read from err: a refused connection, a deadline or timeout (no
// answer within bound), or unknown. An err that already is a
// *registry.UnavailableError is returned unchanged; a nil err yields nil.
// Backends that can tell that a server is not a registry of their kind,
// or that it answered with an error of its own, build the
// UnavailableError themselves with that Cause.
func Unavailable(name, op string, bound time.Duration, err error) error {
	if err == nil {
		return nil
	}
	var ue *registry.UnavailableError
	if errors.As(err, &ue) {
		return err
	}
	c := Classify(err)
	if c != registry.CauseNoAnswer {
		bound = 0
	}
	return &registry.UnavailableError{Registry: name, Op: op, Cause: c, Bound: bound, Err: err}
}

// Classify reads the cause of a network error: CauseRefused for a
// refused connection, CauseNoAnswer for a deadline or a timeout, and
// CauseUnknown otherwise. It does not see context.Canceled as a cause:
// a canceled call is the caller's doing.
func Classify(err error) registry.Cause {
	var ue *registry.UnavailableError
	switch {
	case errors.As(err, &ue):
		return ue.Cause
	case errors.Is(err, syscall.ECONNREFUSED):
		return registry.CauseRefused
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return registry.CauseNoAnswer
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return registry.CauseNoAnswer
	}
	return registry.CauseUnknown
}
