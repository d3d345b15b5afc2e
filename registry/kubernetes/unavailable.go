package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

var (
	// errNotAPIServer is an HTTP answer no API server gives: a web page,
	// plain text, anything but JSON, protobuf or YAML.
	errNotAPIServer = errors.New("not an answer of a Kubernetes API server")
	// errSilent ends a watch whose API server has not answered anything,
	// not even a ping, for the liveness bound.
	errSilent = errors.New("no answer from the API server")
)

// serverName is how errors name the API server at host (a rest.Config
// Host, such as "https://127.0.0.1:6443"): kubernetes://host:port, with
// no scheme, credentials or path.
func serverName(host string) string {
	if u, err := url.Parse(host); err == nil && u.Host != "" {
		return Scheme + "://" + u.Host
	}
	h := host
	if i := strings.Index(h, "://"); i >= 0 {
		h = h[i+3:]
	}
	if i := strings.IndexByte(h, '/'); i >= 0 {
		h = h[:i]
	}
	if i := strings.LastIndexByte(h, '@'); i >= 0 {
		h = h[i+1:]
	}
	return Scheme + "://" + h
}

type boundKey struct{}

// bounded returns ctx with the Registry's timeout if it has no deadline,
// remembering the bound of the outermost call for its errors.
func (r *Registry) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, has := ctx.Deadline()
	if _, ok := ctx.Value(boundKey{}).(time.Duration); !ok {
		b := r.opts.timeout
		if has {
			b = time.Until(dl).Round(time.Millisecond)
		}
		ctx = context.WithValue(ctx, boundKey{}, b)
	}
	if has {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, r.opts.timeout)
}

// callCtx bounds one request: by ctx's deadline, else the timeout.
func (r *Registry) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return r.bounded(ctx)
}

func (r *Registry) boundOf(ctx context.Context) time.Duration {
	if b, ok := ctx.Value(boundKey{}).(time.Duration); ok {
		return b
	}
	return r.opts.timeout
}

// apiError is the one reading of a failed request to the API server: a
// *registry.UnavailableError naming the server and what, with its cause.
//
//   - Connection refused: CauseRefused; no answer within the call's
//     bound, or a watch's server silent for the liveness bound:
//     CauseNoAnswer.
//   - An answer no API server gives (a web page, plain text, a 404 that
//     is not a Status): CauseNotRegistry.
//   - The server's own errors (a Status: 5xx, 429, a denial, a missing
//     Service): CauseServer; a denial (RBAC, or no credentials) also wraps
//     registry.ErrPermissionDenied, a missing Service ErrServiceNotFound.
//
// A cancelled context, and a closed Registry, are returned as they are.
func (r *Registry) apiError(ctx context.Context, what string, err error) error {
	var ue *registry.UnavailableError
	switch {
	case r.isClosed():
		return registry.ErrClosed
	case errors.As(err, &ue):
		return err
	case errors.Is(err, context.Canceled) && !errors.Is(err, errSilent):
		return fmt.Errorf("kubernetes: %s: %w", what, err)
	}
	with := func(c registry.Cause, b time.Duration, e error) error {
		return &registry.UnavailableError{Registry: r.name, Op: what, Cause: c, Bound: b, Err: e}
	}
	switch {
	case errors.Is(err, errSilent):
		return with(registry.CauseNoAnswer, r.liveBound(), err)
	case errors.Is(err, errNotAPIServer), notStatus(err):
		return with(registry.CauseNotRegistry, 0, err)
	case apierrors.IsNotFound(err) && strings.HasPrefix(what, "service "):
		return with(registry.CauseServer, 0, fmt.Errorf("%w: %s does not exist", ErrServiceNotFound, what))
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return with(registry.CauseServer, 0, fmt.Errorf("%w: %v (grant get on services and list and watch on endpointslices.discovery.k8s.io; see docs/kubernetes.md)", registry.ErrPermissionDenied, err))
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return with(registry.CauseServer, 0, err)
	}
	return driver.Unavailable(r.name, what, r.boundOf(ctx), err)
}

// notStatus reports an error client-go made from an answer that was not
// a Kubernetes Status (its "unexpected server response").
func notStatus(err error) bool {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return false
	}
	d := st.Status().Details
	if d == nil {
		return false
	}
	for _, c := range d.Causes {
		if c.Type == metav1.CauseTypeUnexpectedServerResponse {
			return true
		}
	}
	return false
}

// withOp prefixes op to err's operation: "register hello/i1: write
// endpointslice".
func withOp(op string, err error) error {
	var ue *registry.UnavailableError
	if errors.As(err, &ue) {
		c := *ue
		c.Op = op + ": " + ue.Op
		return &c
	}
	return fmt.Errorf("kubernetes: %s: %w", op, err)
}

// apiServerAnswer is what an API server may answer (driver.AnswerCheck
// refuses the rest as errNotAPIServer): JSON, protobuf or YAML, its
// errors included, which are Status objects in those too.
func apiServerAnswer(_ int, mediaType string) bool {
	switch mediaType {
	case "application/json", "application/vnd.kubernetes.protobuf", "application/yaml":
		return true
	}
	return false
}

// liveness is the bound on a watch's silence. A watch is silent by
// design while nothing changes, so what counts is when the API server
// last answered anything: a list, a watch event, or the ping
// (GET /version) that a watch asks for after half the bound. One ping at
// a time serves every watch of the Registry; on HTTP/2 it shares the
// watches' connection, so a frozen server fails it too.
type liveness struct {
	heard   atomic.Int64 // Unix nanoseconds of the last answer
	pinging atomic.Bool
	wg      sync.WaitGroup // pings in flight
}

func (r *Registry) liveBound() time.Duration { return 2 * r.opts.timeout }

func (r *Registry) answered() { r.live.heard.Store(time.Now().UnixNano()) }

// ping asks the API server for its version, unless a ping is in flight.
func (r *Registry) ping() {
	if !r.live.pinging.CompareAndSwap(false, true) {
		return
	}
	r.live.wg.Go(func() {
		defer r.live.pinging.Store(false)
		ctx, cancel := context.WithTimeout(r.ctx, r.liveBound()/2)
		defer cancel()
		if err := r.core.RESTClient().Get().AbsPath("/version").Do(ctx).Error(); err == nil {
			r.answered()
		}
	})
}

// watchdog cancels ctx, with a cause wrapping errSilent, once the API
// server has said nothing for the liveness bound, counting from now; it
// pings after half the bound. stop ends it.
func (r *Registry) watchdog(ctx context.Context, cancel context.CancelCauseFunc) (stop func()) {
	start := time.Now()
	bound := r.liveBound()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(bound / 20)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			heard := time.Unix(0, r.live.heard.Load())
			if heard.Before(start) {
				heard = start
			}
			silent := time.Since(heard)
			if silent >= bound {
				cancel(fmt.Errorf("%w for %v (bound %v)", errSilent, silent.Round(time.Millisecond), bound))
				return
			}
			if silent >= bound/2 {
				r.ping()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
