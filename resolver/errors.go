package resolver

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// Policies' own texts for having no endpoints, which say neither which
// service nor which registry: endpointsharding's (under round_robin and
// every policy built on it), pick_first's and wayfinder_zone_aware's.
// They are what an RPC reads in the moment between the resolver's empty
// set and its error, and for good under grpc's round_robin, which drops
// a resolver error when it has no endpoints.
var noEndpointTexts = []string{"no children to pick from", "produced zero addresses", "the resolver gave no endpoints"}

// DialOptions returns the options to dial a target of b with:
// grpc.WithResolvers(b), and interceptors that turn gRPC's own text for a
// service with no endpoints ("no children to pick from", "produced zero
// addresses", with any policy, grpc's round_robin included) into
// "wayfinder: service X has no instances in <registry>". The code stays
// UNAVAILABLE. NewClient passes them; pass them to grpc.NewClient when
// dialling a NewBuilder builder.
func (b *Builder) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithResolvers(b),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return b.explain(cc, invoker(ctx, method, req, reply, cc, opts...))
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			s, err := streamer(ctx, desc, cc, method, opts...)
			return s, b.explain(cc, err)
		}),
	}
}

// explain rewrites gRPC's text for no endpoints in err, an RPC's error
// on a ClientConn dialled with b, to name the service and registry.
func (b *Builder) explain(cc *grpc.ClientConn, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok || (st.Code() != codes.Unavailable && st.Code() != codes.DeadlineExceeded) {
		return err
	}
	msg := st.Message()
	for _, s := range noEndpointTexts {
		if !strings.Contains(msg, s) {
			continue
		}
		u, perr := url.Parse(cc.Target())
		if perr != nil {
			return err
		}
		var service, source string
		if b.disc != nil {
			service, source = strings.TrimPrefix(u.Path, "/"), discoveryName(b.disc)
		} else {
			t, terr := registry.TargetFromURL(u)
			if terr != nil {
				return err
			}
			service, source = t.Service, registryName(t.Registry)
		}
		return status.Error(st.Code(), strings.Replace(msg, s, noInstancesError(service, source).Error(), 1))
	}
	return err
}
