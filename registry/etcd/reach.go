package etcd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// reach watches every connection the client makes, through its dialer,
// so that a call can tell at once what gRPC hides behind WaitForReady
// (clientv3's default): that every endpoint refuses connections, or
// answers as something other than etcd (an HTTP/1 server). gRPC would
// only let such a call wait for its deadline and report "context
// deadline exceeded".
//
// mu guards last and ch.
type reach struct {
	endpoints int // distinct dial addresses

	mu   sync.Mutex
	last map[string]outcome // by dial address: the latest connection attempt's
	ch   chan struct{}      // closed and replaced when last changes
}

// outcome is what became of one connection attempt.
type outcome struct {
	failed bool           // the endpoint refused, closed or answered as a non-etcd
	cause  registry.Cause // when failed
	err    error          // when failed
	at     time.Time
}

func newReach(endpoints []string) *reach {
	addrs := map[string]bool{}
	for _, ep := range endpoints {
		addrs[dialAddr(ep)] = true
	}
	return &reach{endpoints: len(addrs), last: map[string]outcome{}, ch: make(chan struct{})}
}

// dialAddr is the address gRPC dials for an endpoint, as clientv3 turns
// it into one: "http://h:p" and "https://h:p" dial "h:p".
func dialAddr(ep string) string {
	for _, scheme := range []string{"http://", "https://"} {
		if rest, ok := strings.CutPrefix(ep, scheme); ok {
			return rest
		}
	}
	return ep
}

func (rc *reach) set(addr string, o outcome) {
	o.at = time.Now()
	rc.mu.Lock()
	rc.last[addr] = o
	close(rc.ch)
	rc.ch = make(chan struct{})
	rc.mu.Unlock()
}

// dial is the client's dialer (grpc.WithContextDialer): a plain dial
// that records its outcome and watches the first bytes the server sends.
func (rc *reach) dial(ctx context.Context, addr string) (net.Conn, error) {
	network, address := "tcp", addr
	if rest, ok := strings.CutPrefix(addr, "unix://"); ok {
		network, address = "unix", rest
	} else if rest, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, address = "unix", rest
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		if ctx.Err() == nil || errors.Is(err, context.DeadlineExceeded) {
			rc.set(addr, outcome{failed: true, cause: driver.Classify(err), err: err})
		}
		return nil, err
	}
	rc.set(addr, outcome{})
	return &watchedConn{Conn: c, rc: rc, addr: addr}, nil
}

// watchedConn judges the endpoint by the first bytes it sends: an
// HTTP/1 status line is not etcd, and a close before any byte is a
// refusal (a proxy or load balancer with nothing behind it).
type watchedConn struct {
	net.Conn
	rc     *reach
	addr   string
	judged atomic.Bool
	head   []byte // the first bytes, until judged; only the reader touches it
}

var http1 = []byte("HTTP/")

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if !c.judged.Load() {
		c.judge(b[:n], err)
	}
	return n, err
}

func (c *watchedConn) judge(b []byte, err error) {
	if len(c.head) < 256 {
		c.head = append(c.head, b[:min(len(b), 256-len(c.head))]...)
	}
	switch {
	case bytes.HasPrefix(c.head, http1):
		line, _, _ := bytes.Cut(c.head, []byte("\r\n"))
		c.rc.set(c.addr, outcome{failed: true, cause: registry.CauseNotRegistry,
			err: fmt.Errorf("%s answered %q, an HTTP/1 response, not etcd's gRPC", c.addr, line)})
	case len(c.head) > 0 && (len(c.head) >= len(http1) || !bytes.HasPrefix(http1, c.head)):
		// Anything else is the endpoint's answer; a gRPC error, if it is
		// one, is read from the calls' errors.
	case err == nil:
		return // too few bytes to tell
	case len(c.head) == 0 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)):
		c.rc.set(c.addr, outcome{failed: true, cause: registry.CauseRefused,
			err: fmt.Errorf("%s accepted the connection and closed it before answering: %w", c.addr, err)})
	}
	// Otherwise the client closed the connection or timed out itself:
	// the dial's outcome (connected, no answer) stands.
	c.judged.Store(true)
}

// verdict reports whether every endpoint's latest connection attempt
// failed in a way that waiting will not change (refused, or not etcd),
// with the cause and error to report, and whether those attempts were
// all made at or after since. ch is closed at the next change.
func (rc *reach) verdict(since time.Time) (cause registry.Cause, failed, fresh bool, ch <-chan struct{}, err error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	ch = rc.ch
	if rc.endpoints == 0 || len(rc.last) < rc.endpoints {
		return 0, false, false, ch, nil
	}
	fresh = true
	var errs []error
	cause = registry.CauseRefused
	for _, o := range rc.last {
		if !o.failed || o.cause == registry.CauseNoAnswer {
			return 0, false, false, ch, nil
		}
		if o.at.Before(since) {
			fresh = false
		}
		errs = append(errs, o.err)
		switch {
		case o.cause == registry.CauseNotRegistry:
			cause = registry.CauseNotRegistry
		case o.cause != registry.CauseRefused && cause == registry.CauseRefused:
			cause = o.cause
		}
	}
	return cause, true, fresh, ch, errors.Join(errs...)
}

// refusal is the cause of a call cut short by reach.
type refusal struct {
	cause registry.Cause
	err   error
}

func (e *refusal) Error() string { return e.err.Error() }

// call is one bounded call: ctx ends at the caller's deadline, else at
// the Registry's timeout, or as soon as every endpoint is known to
// refuse or not to be etcd.
type call struct {
	r      *Registry
	op     string
	ctx    context.Context
	parent context.Context
	bound  time.Duration
	stop   func()
}

// startCall bounds a call named op ("lookup \"hello\""); end releases it.
func (r *Registry) startCall(ctx context.Context, op string, timeout time.Duration) *call {
	c := &call{r: r, op: op, parent: ctx}
	var cancelT context.CancelFunc = func() {}
	if dl, ok := ctx.Deadline(); ok {
		c.bound = time.Until(dl)
	} else {
		c.bound = timeout
		ctx, cancelT = context.WithTimeout(ctx, timeout)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	c.ctx = ctx
	if r.reach == nil {
		c.stop = func() { cancel(nil); cancelT() }
		return c
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.failFast(ctx, time.Now(), cancel)
	}()
	c.stop = func() {
		cancel(nil)
		cancelT()
		<-done
	}
	return c
}

func (c *call) end() { c.stop() }

// failFast cancels ctx with a *refusal once every endpoint has refused
// or answered as a non-etcd since the call started. If that was so
// before, it has gRPC dial again at once rather than after its backoff,
// so that the verdict is always a fresh one: a recovered etcd is not
// reported as refused.
func (r *Registry) failFast(ctx context.Context, since time.Time, cancel context.CancelCauseFunc) {
	kicked := false
	for {
		cause, failed, fresh, ch, err := r.reach.verdict(since)
		if failed && fresh {
			cancel(&refusal{cause, err})
			return
		}
		if failed && !kicked {
			kicked = true
			if cli := r.Client(); cli != nil {
				cli.ActiveConnection().ResetConnectBackoff()
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// fail turns the error of a call into what the caller gets: a
// *registry.UnavailableError naming the cluster, the operation and the
// cause; registry.ErrClosed after Close; the caller's own cancellation
// as it is.
func (c *call) fail(err error) error {
	r := c.r
	if err == nil {
		return nil
	}
	if r.isClosed() {
		return fmt.Errorf("etcd: %s: %w", c.op, registry.ErrClosed)
	}
	if errors.Is(err, registry.ErrClosed) {
		return err
	}
	var rf *refusal
	if errors.As(context.Cause(c.ctx), &rf) {
		var sp *stillPending
		if errors.As(err, &sp) {
			return &registry.UnavailableError{Registry: r.name, Op: c.op, Cause: rf.cause, Err: &stillPending{rf.err, sp.pending}}
		}
		return &registry.UnavailableError{Registry: r.name, Op: c.op, Cause: rf.cause, Err: rf.err}
	}
	if c.parent.Err() == context.Canceled {
		return fmt.Errorf("etcd: %s: %w", c.op, context.Canceled)
	}
	if cause := classify(err); cause != registry.CauseUnknown && cause != registry.CauseNoAnswer {
		return &registry.UnavailableError{Registry: r.name, Op: c.op, Cause: cause, Err: denied(err)}
	}
	if c.ctx.Err() != nil {
		return &registry.UnavailableError{Registry: r.name, Op: c.op, Cause: registry.CauseNoAnswer, Bound: c.bound.Round(time.Millisecond), Err: err}
	}
	return driver.Unavailable(r.name, c.op, c.bound, err)
}

// classify reads the cause of an etcd client error: etcd's own errors
// (no leader, a denial) are the server's; an HTTP status instead of a
// gRPC answer, or a gRPC server without etcd's services, is not etcd;
// network errors are read as driver.Classify reads them.
func classify(err error) registry.Cause {
	var ue *registry.UnavailableError
	if errors.As(err, &ue) {
		return ue.Cause
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return registry.CauseServer
	}
	if st, ok := status.FromError(err); ok {
		msg := st.Message()
		switch {
		case st.Code() == codes.Unimplemented,
			strings.Contains(msg, "unexpected HTTP status code"),
			strings.Contains(msg, "unexpected content-type"):
			return registry.CauseNotRegistry
		case st.Code() == codes.PermissionDenied, st.Code() == codes.Unauthenticated:
			return registry.CauseServer
		}
	}
	return driver.Classify(err)
}

// unavailable builds the error a watcher reports, with the cause read
// from err and from what the client's dialer saw.
func (r *Registry) unavailable(op string, bound time.Duration, err error) error {
	cause := classify(err)
	if errors.Is(err, errSilent) {
		cause = registry.CauseNoAnswer
	}
	if cause == registry.CauseUnknown || cause == registry.CauseNoAnswer {
		if r.reach != nil {
			if c, failed, _, _, rerr := r.reach.verdict(time.Time{}); failed {
				return &registry.UnavailableError{Registry: r.name, Op: op, Cause: c, Err: errors.Join(rerr, err)}
			}
		}
	}
	if cause != registry.CauseNoAnswer {
		bound = 0
	}
	return &registry.UnavailableError{Registry: r.name, Op: op, Cause: cause, Bound: bound, Err: denied(err)}
}

// denied marks a credentials error (see permanent) as
// registry.ErrPermissionDenied, the sentinel every backend wraps for a
// denial; other errors are returned as they are.
func denied(err error) error {
	if !permanent(err) || errors.Is(err, registry.ErrPermissionDenied) {
		return err
	}
	return fmt.Errorf("%w: %w", registry.ErrPermissionDenied, err)
}

// clusterName is how errors name the cluster: "etcd://" and the
// endpoints' addresses.
func clusterName(endpoints []string) string {
	addrs := make([]string, len(endpoints))
	for i, ep := range endpoints {
		addrs[i] = dialAddr(ep)
	}
	return Scheme + "://" + strings.Join(addrs, ",")
}
