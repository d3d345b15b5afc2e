package resolver

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// rpcError is every error a resolver reports to gRPC (ReportError): the
// text an application's RPC fails with, naming the service and the
// registry.
//
// It deliberately carries no gRPC status and unwraps to nothing. gRPC
// ends an RPC at once with the status of a picker error that has one
// (picker_wrapper.go: "end the RPC unconditionally"), wait-for-ready or
// not, and a picker fails with the resolver's error as it is while the
// channel has no policy yet (gracefulswitch's ResolverError). A registry
// error that wrapped a status (etcd's client returns codes.Unimplemented
// for an endpoint answering HTTP 404) thus leaked its code to the
// application, and even codes.Unavailable would end wait-for-ready RPCs.
// A plain error is what gRPC turns into codes.Unavailable with this text
// for a fail-fast RPC, while a wait-for-ready RPC waits for the next
// picker: so retry policies retry and wait-for-ready waits.
//
// errors.Is(err, registry.ErrUnavailable) holds for a registry outage.
type rpcError struct {
	msg         string
	unavailable bool
}

func (e *rpcError) Error() string { return e.msg }

// Is reports a registry outage as registry.ErrUnavailable, without an
// Unwrap that would let gRPC find a status inside.
func (e *rpcError) Is(target error) bool { return e.unavailable && target == registry.ErrUnavailable }

// outageError is what RPCs read while the registry cannot be used:
// `wayfinder: service "hello" in etcd://127.0.0.1:2379: watch "hello":
// connection refused (...)`. The registry is the UnavailableError's when
// the backend gives one, else source.
func outageError(service, source string, err error) error {
	reg, detail := source, err.Error()
	if ue, ok := errors.AsType[*registry.UnavailableError](err); ok && ue.Registry != "" {
		reg, detail = ue.Registry, strings.TrimPrefix(ue.Error(), ue.Registry+": ")
	}
	return &rpcError{msg: fmt.Sprintf("wayfinder: service %q in %s: %s", service, reg, detail), unavailable: errors.Is(err, registry.ErrUnavailable)}
}

// noInstancesError is what RPCs read while the service has no instances.
func noInstancesError(service, source string) error {
	return &rpcError{msg: fmt.Sprintf("wayfinder: service %q has no instances in %s", service, source)}
}

// registryName names a registry URL for messages, redacted: "mem://",
// "consul://127.0.0.1:8500", "etcd://10.0.0.1:2379".
func registryName(u *url.URL) string {
	s := u.Redacted()
	if u.Host == "" && u.Opaque == "" && !strings.Contains(s, "//") {
		s = u.Scheme + "://" + strings.TrimPrefix(s, u.Scheme+":")
	}
	return s
}

// discoveryName names an injected Discovery: its String method's text,
// else its type, such as "*memory.Registry".
func discoveryName(d registry.Discovery) string {
	if s, ok := d.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", d)
}
