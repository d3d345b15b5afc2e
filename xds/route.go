package xds

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Route is what a service's route tells its clients about every call
// (gRFC A31 for the timeout, A44 for retries).
type Route struct {
	// Timeout caps every call's deadline: a call without a deadline, or
	// with a later one, ends with DEADLINE_EXCEEDED after Timeout (the
	// route's max_stream_duration). 0: no cap.
	Timeout time.Duration
	// Retry, if not nil, retries failed calls.
	Retry *Retry
}

// Retry is a route's retry policy. A client retries a call that failed
// with one of the codes On, at most NumRetries times, waiting a random
// time up to BaseBackoff*2^n (at most MaxBackoff) before the n-th retry.
// A call is not retried once the server has sent it response headers,
// nor beyond its deadline, and gRPC clients throttle retries to a
// server that keeps failing.
type Retry struct {
	// On lists the codes that retry: gRPC clients honour Canceled,
	// DeadlineExceeded, Internal, ResourceExhausted and Unavailable.
	On []codes.Code
	// NumRetries is 1 to 4 (gRPC clients make at most 5 attempts);
	// 0 is 1.
	NumRetries int
	// BaseBackoff is the first retry's longest wait; default 25ms.
	// MaxBackoff caps the waits; default 10 times BaseBackoff.
	BaseBackoff, MaxBackoff time.Duration
}

// retryCodes are the codes gRPC clients retry on, by their names in an
// xDS retry_on (gRFC A44).
var retryCodes = map[codes.Code]string{
	codes.Canceled:          "cancelled",
	codes.DeadlineExceeded:  "deadline-exceeded",
	codes.Internal:          "internal",
	codes.ResourceExhausted: "resource-exhausted",
	codes.Unavailable:       "unavailable",
}

// WithRoute sets the timeout and retries of service's route, for every
// client language that implements them (see docs/xds.md).
func WithRoute(service string, r Route) Option {
	return func(o *options) {
		if err := validService(service); err != nil {
			o.invalid = append(o.invalid, fmt.Errorf("xds: route: %w", err))
			return
		}
		rt, err := r.proto()
		if err != nil {
			o.invalid = append(o.invalid, fmt.Errorf("xds: route of %q: %w", service, err))
			return
		}
		o.servicePolicy(service).route = rt
	}
}

// routeAction is what a Route adds to a route's action.
type routeAction struct {
	timeout *durationpb.Duration
	retry   *routepb.RetryPolicy
}

func (r Route) proto() (*routeAction, error) {
	if r.Timeout < 0 {
		return nil, fmt.Errorf("timeout %v: want 0 (none) or more", r.Timeout)
	}
	ra := &routeAction{}
	if r.Timeout > 0 {
		ra.timeout = durationpb.New(r.Timeout)
	}
	if rt := r.Retry; rt != nil {
		if len(rt.On) == 0 {
			return nil, fmt.Errorf("Retry.On: no code to retry on")
		}
		var on []string
		for _, c := range rt.On {
			name, ok := retryCodes[c]
			if !ok {
				return nil, fmt.Errorf("Retry.On: %v: gRPC clients retry only on Canceled, DeadlineExceeded, Internal, ResourceExhausted and Unavailable", c)
			}
			if !slices.Contains(on, name) {
				on = append(on, name)
			}
		}
		n := cmp.Or(rt.NumRetries, 1)
		base := cmp.Or(rt.BaseBackoff, 25*time.Millisecond)
		maxB := cmp.Or(rt.MaxBackoff, 10*base)
		switch {
		case n < 1 || n > 4:
			return nil, fmt.Errorf("Retry.NumRetries %d: want 1 to 4", rt.NumRetries)
		case rt.BaseBackoff < 0 || rt.MaxBackoff < 0:
			return nil, fmt.Errorf("Retry: a negative backoff")
		case maxB < base:
			return nil, fmt.Errorf("Retry.MaxBackoff %v is less than BaseBackoff %v", maxB, base)
		}
		ra.retry = &routepb.RetryPolicy{
			RetryOn:    strings.Join(on, ","),
			NumRetries: wrapperspb.UInt32(uint32(n)),
			RetryBackOff: &routepb.RetryPolicy_RetryBackOff{
				BaseInterval: durationpb.New(base),
				MaxInterval:  durationpb.New(maxB),
			},
		}
	}
	return ra, nil
}

// apply sets ra's timeout and retries on action.
func (ra *routeAction) apply(action *routepb.RouteAction) {
	if ra == nil {
		return
	}
	if ra.timeout != nil {
		action.MaxStreamDuration = &routepb.RouteAction_MaxStreamDuration{MaxStreamDuration: ra.timeout}
	}
	action.RetryPolicy = ra.retry
}
