// Package failure is Wayfinder's one definition of a failed call: what a
// call's status says about the endpoint that served it. The policies
// that react to failures, P2C and outlier ejection, classify with Of
// and differ only in which kinds they act on, for the reasons given on
// Penalised and Ejects.
package failure

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Kind is what a call's outcome says about its endpoint.
type Kind int

const (
	// None: a success, or the application's answer (NOT_FOUND,
	// INVALID_ARGUMENT, PERMISSION_DENIED ...), or the caller giving up
	// (CANCELED). Nothing against the endpoint.
	None Kind = iota
	// Broken: UNAVAILABLE, INTERNAL, UNKNOWN or DATA_LOSS, the codes
	// gRPC maps from HTTP 5xx and what a broken transport gives. The
	// endpoint is unwell.
	Broken
	// Overloaded: RESOURCE_EXHAUSTED. The endpoint shed the call for
	// load, or a quota refused it, or the message was too large; which
	// one the client cannot tell.
	Overloaded
	// TimedOut: DEADLINE_EXCEEDED. No answer within the caller's
	// deadline, which says as much about the deadline as the endpoint.
	TimedOut
)

// Of classifies err, a call's error (nil for a success).
func Of(err error) Kind {
	if err == nil {
		return None
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.DataLoss:
		return Broken
	case codes.ResourceExhausted:
		return Overloaded
	case codes.DeadlineExceeded:
		return TimedOut
	}
	return None
}

// Penalised reports whether P2C charges err's call its error penalty.
// P2C steers load, and its penalty only makes a fast failure look slow:
// an Overloaded endpoint should get less load, so it counts; a TimedOut
// call already took the whole deadline, which its latency records, and
// a penalty on top would punish endpoints for callers' short deadlines.
func Penalised(err error) bool {
	k := Of(err)
	return k == Broken || k == Overloaded
}

// Ejects reports whether outlier ejection counts err's call against its
// endpoint. Ejection takes a host out of service altogether, so it
// counts only what says the host is bad: a host that hangs until
// deadlines expire is (outlier ejection has no latency to see it by),
// so TimedOut counts; RESOURCE_EXHAUSTED is as often a per-caller quota
// or an oversized message as an overloaded host, and ejecting healthy
// hosts for it would move the load onto fewer, so Overloaded does not.
func Ejects(err error) bool {
	k := Of(err)
	return k == Broken || k == TimedOut
}
