package registry

import (
	"fmt"
	"time"
)

// Cause says why a registry could not be used, as far as the client can
// tell: the first thing to check differs for each.
type Cause int

const (
	// CauseUnknown is any other failure to reach or use the registry.
	CauseUnknown Cause = iota
	// CauseRefused: the address refused the connection; nothing listens
	// there (a registry that is down, or a wrong port).
	CauseRefused
	// CauseNoAnswer: no answer within the bound. The registry accepted
	// the connection and said nothing (a frozen or overloaded process),
	// or the address never answered the connection attempt.
	CauseNoAnswer
	// CauseNotRegistry: something answered, but not as a registry of
	// this kind does (an HTTP 404, a web page, another protocol): a
	// wrong address or port.
	CauseNotRegistry
	// CauseServer: the registry answered with an error of its own (no
	// leader, an internal error, a denial).
	CauseServer
)

// String returns what the cause means to an operator.
func (c Cause) String() string {
	switch c {
	case CauseRefused:
		return "connection refused (is the registry running at that address?)"
	case CauseNoAnswer:
		return "no answer (the registry accepted the connection or the dial hangs, and it says nothing: frozen, overloaded or unreachable)"
	case CauseNotRegistry:
		return "answered, but not as this kind of registry does (a wrong address or port?)"
	case CauseServer:
		return "the registry answered with an error"
	default:
		return "unavailable"
	}
}

// UnavailableError is the error of a call that could not use a registry.
// It wraps ErrUnavailable and the underlying error, so callers test it
// with errors.Is(err, ErrUnavailable) and read it with errors.As.
type UnavailableError struct {
	// Registry names the registry as its URL with any secret redacted,
	// such as "consul://127.0.0.1:8500" or "etcd://10.0.0.1:2379".
	Registry string
	// Op is what was attempted, such as `register "hello/i1"` or
	// `lookup "hello"`.
	Op string
	// Cause classifies the failure.
	Cause Cause
	// Bound is the time the call waited, when Cause is CauseNoAnswer
	// and the backend knows it; zero otherwise.
	Bound time.Duration
	// Err is the underlying error; it may be nil.
	Err error
}

// Error reads "<registry>: <op>: <cause>: <underlying error>".
func (e *UnavailableError) Error() string {
	cause := e.Cause.String()
	if e.Cause == CauseNoAnswer && e.Bound > 0 {
		cause = fmt.Sprintf("no answer within %v (the registry accepted the connection or the dial hangs, and it says nothing: frozen, overloaded or unreachable)", e.Bound)
	}
	s := e.Registry
	if e.Op != "" {
		s += ": " + e.Op
	}
	s += ": " + cause
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrUnavailable and the underlying error.
func (e *UnavailableError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrUnavailable}
	}
	return []error{ErrUnavailable, e.Err}
}
