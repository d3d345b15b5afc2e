package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/backoff"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	"github.com/wayfinder-rpc/wayfinder/registry/zookeeper/internal/zk"
)

// Scheme is the URL scheme of the ZooKeeper backend.
const Scheme = "zk"

// Defaults.
const (
	DefaultRoot     = "/wayfinder"
	DefaultTimeout  = 5 * time.Second
	DefaultEndpoint = "127.0.0.1:2181"
	// DefaultSessionTimeout is the session timeout asked of the server.
	// The client takes a connection that stays silent for two thirds of
	// it (5s) for lost, so a watch reports a frozen server within the
	// same 5s that bounds every call.
	DefaultSessionTimeout = 7500 * time.Millisecond
)

// EnvAuth names the environment variable holding digest credentials,
// "user:password", for Registries given none with WithDigestAuth.
// Credentials never go in a URL.
const EnvAuth = "WAYFINDER_ZOOKEEPER_AUTH"

// Registry is a ZooKeeper client in both registry roles, over one
// session. It is safe for concurrent use.
//
// Lock order: Registry.mu before nothing else, and it is never held
// while calling the ZooKeeper connection. mu guards the connection state
// (state, session, connCh), the registration tables (entries, deletes),
// the keeper's published state (lastErr, stateCh), the watch loops and
// closing.
type Registry struct {
	unregisterMetrics func()
	opts              options
	name              string // "zk://" and the servers, for errors
	servers           []string
	log               *slog.Logger
	acl               []zk.ACL
	auth              []byte // digest "user:password", nil without credentials
	conn              *zk.Conn
	connSet           chan struct{} // closed once conn is set
	dial              *dialer

	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup // every goroutine the Registry starts but connDone's
	connDone chan struct{}  // closed when the connection's goroutines have ended
	closed   sync.Once

	watchers driver.Watchers
	problems *driver.FieldReporter

	mu       sync.Mutex
	closing  bool
	state    zk.State
	session  int64         // the live session's ID, 0 while there is none
	authDone bool          // the credentials were added to the live connection
	connCh   chan struct{} // closed and replaced when state or session changes
	entries  map[string]*entry
	deletes  map[string]*delOp
	lastErr  error
	stateCh  chan struct{} // closed and replaced on every registration change
	kick     chan struct{} // 1-slot: wakes the keeper
	keeperOn bool
	loops    map[string]map[*watchLoop]struct{} // service node path -> loops
	stats    stats
}

var (
	_ registry.Registry             = (*Registry)(nil)
	_ registry.StatusReporter       = (*Registry)(nil)
	_ registry.ServiceLister        = (*Registry)(nil)
	_ registry.FieldProblemReporter = (*Registry)(nil)
)

// New returns a Registry of the ZooKeeper ensemble at servers
// (host:port). With no servers it uses DefaultEndpoint. New does not
// wait for the network: the session is established in the background,
// and an unreachable ensemble surfaces from the methods as
// registry.ErrUnavailable.
func New(servers []string, opts ...Option) (*Registry, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return newFromOptions(servers, o)
}

func newFromOptions(servers []string, o options) (*Registry, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if len(servers) == 0 {
		servers = []string{DefaultEndpoint}
	}
	for _, s := range servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, fmt.Errorf("zookeeper: server %q: want host:port", s)
		}
	}
	user, pass, err := o.credentials()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{
		opts:     o,
		name:     Scheme + "://" + strings.Join(servers, ","),
		servers:  servers,
		log:      o.logger,
		ctx:      ctx,
		cancel:   cancel,
		connDone: make(chan struct{}),
		connSet:  make(chan struct{}),
		dial:     newDialer(),
		problems: driver.NewFieldReporter("zookeeper", o.logger),
		connCh:   make(chan struct{}),
		entries:  map[string]*entry{},
		deletes:  map[string]*delOp{},
		stateCh:  make(chan struct{}),
		kick:     make(chan struct{}, 1),
		loops:    map[string]map[*watchLoop]struct{}{},
		state:    zk.StateDisconnected,
	}
	r.acl = zk.WorldACL(zk.PermAll)
	if user != "" {
		r.auth = []byte(user + ":" + pass)
		r.acl = append(zk.DigestACL(zk.PermAll, user, pass), zk.WorldACL(zk.PermRead)...)
	}
	if o.acl != nil {
		r.acl = o.acl
	}
	conn, events, err := zk.Connect(servers, o.session,
		zk.WithDialer(r.dial.dial),
		zk.WithLogger(zkLogger{o.logger}),
		zk.WithLogInfo(false),
		zk.WithEventCallback(r.onEvent))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("zookeeper: %w", err)
	}
	r.conn = conn
	close(r.connSet)
	// The event channel closes when the connection's loop has ended;
	// Close waits for that, so no goroutine of the client outlives it.
	go func() {
		for range events {
		}
		close(r.connDone)
	}()
	r.unregisterMetrics = r.registerMetrics(o.meter)
	return r, nil
}

// zkLogger passes the client library's lines to the Registry's logger
// at debug level: reconnects are routine, and failures that matter
// surface as errors.
type zkLogger struct{ l *slog.Logger }

func (z zkLogger) Printf(format string, args ...any) {
	z.l.Debug("zookeeper: " + fmt.Sprintf(format, args...))
}

// Root returns the root node: instances live at Root()/<service>/<id>.
func (r *Registry) Root() string { return r.opts.root }

// Conn returns the underlying connection, for tools and tests.
func (r *Registry) Conn() *zk.Conn { return r.conn }

func (r *Registry) servicePath(service string) string { return path.Join(r.opts.root, service) }

func (r *Registry) nodePath(service, id string) string { return path.Join(r.opts.root, service, id) }

func (r *Registry) isClosed() bool { return r.ctx.Err() != nil }

// onEvent is the connection's event callback: session states and watch
// events. It must not block; it takes mu briefly.
func (r *Registry) onEvent(ev zk.Event) {
	if ev.Type == zk.EventSession {
		var sid int64
		if ev.State == zk.StateHasSession {
			<-r.connSet // the first session may come before New has set conn
			sid = r.conn.SessionID()
		}
		r.mu.Lock()
		prev, wasLive := r.session, r.state == zk.StateHasSession
		r.state = ev.State
		switch ev.State {
		case zk.StateHasSession:
			r.session = sid
		case zk.StateExpired:
			r.session = 0
		}
		if ev.State != zk.StateHasSession {
			r.authDone = false
		}
		newSession := r.session != 0 && r.session != prev
		if wasLive && ev.State != zk.StateHasSession && len(r.entries) > 0 {
			// The registrations are not known to hold until the session
			// is live again: Status says retrying, with why.
			r.lastErr = &registry.UnavailableError{Registry: r.name, Op: "keep registrations", Cause: registry.CauseUnknown,
				Err: fmt.Errorf("connection to ZooKeeper lost (%v)", ev.State)}
			r.changedLocked()
		}
		close(r.connCh)
		r.connCh = make(chan struct{})
		r.mu.Unlock()
		if ev.State == zk.StateHasSession {
			r.dial.answered()
		}
		if newSession || ev.State == zk.StateHasSession {
			r.wake()
		}
		return
	}
	if ev.Path == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.Type == zk.EventNodeDeleted {
		if e := r.entries[ev.Path]; e != nil && e.session != 0 {
			// Someone else deleted our node: write it again.
			e.session = 0
			r.stats.rewrites++
			r.changedLocked()
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
	}
	// A children or existence event names the service node, a data
	// event the instance node under it.
	for l := range r.loops[ev.Path] {
		l.notify("")
	}
	dir, child := path.Split(ev.Path)
	for l := range r.loops[strings.TrimSuffix(dir, "/")] {
		l.notify(child)
	}
}

// connState returns whether there is a live session, and a channel
// closed at the next change of the connection's state.
func (r *Registry) connState() (live bool, changed <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.session != 0 && r.state == zk.StateHasSession, r.connCh
}

// goCall starts f in a goroutine the Registry owns; false after Close.
func (r *Registry) goCall(f func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return false
	}
	r.wg.Go(f)
	return true
}

// call runs f on the connection, bounded by ctx's deadline, else by the
// timeout. The connection's requests have no deadline of their own, so f
// runs in a goroutine the Registry owns; it ends when the server
// answers, when the client drops the connection (two thirds of the
// session timeout without a byte), or at Close. While no session is
// live and the last dial of every server was refused, call returns a
// refusal at once. The error is a *registry.UnavailableError for a
// registry that could not be used, and f's own error (zk.ErrNoNode, ...)
// otherwise.
func (r *Registry) call(ctx context.Context, op string, f func(*zk.Conn) error) error {
	if r.isClosed() {
		return fmt.Errorf("zookeeper: %s: %w", op, registry.ErrClosed)
	}
	bound := r.opts.timeout
	if dl, ok := ctx.Deadline(); ok {
		bound = time.Until(dl)
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, bound)
		defer cancel()
	}
	if err := r.ready(ctx, op); err != nil {
		return err
	}
	for {
		done := make(chan error, 1)
		if !r.goCall(func() { done <- f(r.conn) }) {
			return fmt.Errorf("zookeeper: %s: %w", op, registry.ErrClosed)
		}
		select {
		case err := <-done:
			if !transportErr(err) || r.isClosed() {
				return r.classify(op, err)
			}
			// The connection dropped under the request: the session may
			// come back within the bound (the client reconnects), so wait
			// for it and try again. A create or delete that went through
			// before the drop then meets ErrNodeExists or ErrNoNode,
			// which its caller handles.
			if rerr := r.ready(ctx, op); rerr != nil {
				return rerr
			}
		case <-ctx.Done():
			return r.ctxErr(ctx, op, bound)
		case <-r.ctx.Done():
			return fmt.Errorf("zookeeper: %s: %w", op, registry.ErrClosed)
		}
	}
}

// transportErr reports whether err is the client's rather than the
// server's: the connection closed or failed under the request.
func transportErr(err error) bool {
	if err == nil || serverErr(err) {
		return false
	}
	return true
}

// serverErr reports whether err is an error code ZooKeeper answered.
func serverErr(err error) bool {
	for _, e := range []error{zk.ErrAPIError, zk.ErrNoNode, zk.ErrNoAuth, zk.ErrBadVersion,
		zk.ErrNoChildrenForEphemerals, zk.ErrNodeExists, zk.ErrNotEmpty, zk.ErrSessionExpired,
		zk.ErrInvalidACL, zk.ErrAuthFailed, zk.ErrSessionMoved, zk.ErrReconfigDisabled,
		zk.ErrBadArguments, zk.ErrUnknown, zk.ErrInvalidFlags, zk.ErrInvalidPath} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ready waits, within ctx, for a live session with its credentials
// added. It fails at once while every server refuses.
func (r *Registry) ready(ctx context.Context, op string) error {
	bound := r.opts.timeout
	if dl, ok := ctx.Deadline(); ok {
		bound = time.Until(dl)
	}
	for {
		r.mu.Lock()
		live := r.session != 0 && r.state == zk.StateHasSession
		authed, changed := r.authDone || r.auth == nil, r.connCh
		r.mu.Unlock()
		if live && authed {
			return nil
		}
		if live {
			if err := r.addAuth(ctx, op); err != nil {
				return err
			}
			continue
		}
		if r.dial.refusedAgain() != nil {
			if refused := r.probe(); refused != nil {
				return &registry.UnavailableError{Registry: r.name, Op: op, Cause: registry.CauseRefused, Err: refused}
			}
		}
		rch, _ := r.dial.refused()
		select {
		case <-changed:
		case <-rch:
		case <-ctx.Done():
			return r.ctxErr(ctx, op, bound)
		case <-r.ctx.Done():
			return fmt.Errorf("zookeeper: %s: %w", op, registry.ErrClosed)
		}
	}
}

// addAuth adds the digest credentials to the live connection; the
// client sends them again on every reconnection of the same session.
func (r *Registry) addAuth(ctx context.Context, op string) error {
	r.mu.Lock()
	sess := r.session
	r.mu.Unlock()
	done := make(chan error, 1)
	if !r.goCall(func() { done <- r.conn.AddAuth("digest", r.auth) }) {
		return fmt.Errorf("zookeeper: %s: %w", op, registry.ErrClosed)
	}
	select {
	case err := <-done:
		if err != nil {
			return r.classify(op+": add credentials", err)
		}
		r.mu.Lock()
		if r.session == sess {
			r.authDone = true
		}
		r.mu.Unlock()
		return nil
	case <-ctx.Done():
		return r.ctxErr(ctx, op, r.opts.timeout)
	case <-r.ctx.Done():
		return fmt.Errorf("zookeeper: %s: %w", op, registry.ErrClosed)
	}
}

// probe dials every server once to confirm a refusal that the client
// saw, which may be stale: the client redials only every second. A
// server that accepts and says nothing for 200ms is alive (ZooKeeper
// speaks only after the client's handshake); one that refuses, or
// accepts and closes, is not. It returns the last refusal, or nil if
// any server is alive.
func (r *Registry) probe() error {
	var last error
	for _, s := range r.servers {
		c, err := net.DialTimeout("tcp", s, time.Second)
		if err != nil {
			if driver.Classify(err) != registry.CauseRefused {
				return nil
			}
			last = err
			continue
		}
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if err == nil || driver.Classify(err) == registry.CauseNoAnswer {
			return nil
		}
		last = fmt.Errorf("%s closed the connection before answering: %w", s, err)
	}
	return last
}

// ctxErr is the error of a call whose context ended: the caller's
// cancellation as it is, a deadline as no answer within bound.
func (r *Registry) ctxErr(ctx context.Context, op string, bound time.Duration) error {
	if errors.Is(context.Cause(ctx), context.Canceled) {
		return ctx.Err()
	}
	if _, refused := r.dial.refused(); refused != nil {
		return &registry.UnavailableError{Registry: r.name, Op: op, Cause: registry.CauseRefused, Err: refused}
	}
	return &registry.UnavailableError{Registry: r.name, Op: op, Cause: registry.CauseNoAnswer, Bound: bound.Round(time.Millisecond), Err: ctx.Err()}
}

// classify turns the client's errors into the registry's: a lost
// connection or session is ErrUnavailable, a denial also
// ErrPermissionDenied. Node-level errors (zk.ErrNoNode,
// zk.ErrNodeExists, zk.ErrBadVersion, zk.ErrNotEmpty) come back as they
// are, for the caller to handle.
func (r *Registry) classify(op string, err error) error {
	switch {
	case err == nil, errors.Is(err, zk.ErrNoNode), errors.Is(err, zk.ErrNodeExists),
		errors.Is(err, zk.ErrBadVersion), errors.Is(err, zk.ErrNotEmpty):
		return err
	case errors.Is(err, zk.ErrNoAuth), errors.Is(err, zk.ErrAuthFailed), errors.Is(err, zk.ErrInvalidACL):
		return &registry.UnavailableError{Registry: r.name, Op: op, Cause: registry.CauseServer, Err: fmt.Errorf("%w: %w", registry.ErrPermissionDenied, err)}
	case errors.Is(err, zk.ErrClosing) && r.isClosed():
		return fmt.Errorf("zookeeper: %s: %w", op, registry.ErrClosed)
	case serverErr(err):
		return &registry.UnavailableError{Registry: r.name, Op: op, Cause: registry.CauseServer, Err: err}
	}
	if _, refused := r.dial.refused(); refused != nil {
		return &registry.UnavailableError{Registry: r.name, Op: op, Cause: registry.CauseRefused, Err: refused}
	}
	return &registry.UnavailableError{Registry: r.name, Op: op, Cause: registry.CauseUnknown, Err: err}
}

// Close stops the background loops and watchers, closes the session
// (its ephemeral nodes go with it: the instances this Registry
// registered disappear at once, as a deregistration would) and waits for
// every goroutine it and the client library started. Close on a nil
// *Registry does nothing.
func (r *Registry) Close() error {
	if r == nil {
		return nil
	}
	r.closed.Do(func() {
		r.watchers.CloseAll()
		r.unregisterMetrics()
		r.mu.Lock()
		r.closing = true
		r.mu.Unlock()
		r.cancel()
		// Close sends the server a close request, waiting at most 3s for
		// a frozen one; closing our sockets then ends the client's loop
		// at once rather than at its read deadline.
		r.conn.Close()
		r.dial.closeAll()
		<-r.connDone
		r.wg.Wait()
	})
	return nil
}

// newBackoff is the retry delay of the keeper and the watches: from
// 50ms, doubling to 3s, jittered.
func newBackoff() *backoff.Backoff {
	return &backoff.Backoff{Base: 50 * time.Millisecond, Max: 3 * time.Second}
}

// dialer dials the servers for the client library and keeps what the
// dials saw: whether the last attempt was refused (or accepted and
// closed before the server said anything), so that calls can say so at
// once, and every connection, so that Close can end them.
//
// mu guards every field.
type dialer struct {
	mu       sync.Mutex
	closed   bool
	conns    map[net.Conn]struct{}
	lastErr  error         // the last dial's refusal; nil once a server answered
	refusals int           // refusals since a server last answered
	changeCh chan struct{} // closed and replaced when lastErr changes
}

func newDialer() *dialer {
	return &dialer{conns: map[net.Conn]struct{}{}, changeCh: make(chan struct{})}
}

func (d *dialer) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil, net.ErrClosed
	}
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		if driver.Classify(err) == registry.CauseRefused {
			d.setRefused(err)
		}
		return nil, err
	}
	tc := &trackedConn{Conn: c, d: d}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	d.conns[tc] = struct{}{}
	return tc, nil
}

func (d *dialer) setRefused(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastErr = err
	d.refusals++
	close(d.changeCh)
	d.changeCh = make(chan struct{})
}

// answered records that a server answered.
func (d *dialer) answered() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lastErr != nil {
		d.lastErr, d.refusals = nil, 0
		close(d.changeCh)
		d.changeCh = make(chan struct{})
	}
}

// refused returns the last refusal, nil if a server answered since, and
// a channel closed at the next change.
func (d *dialer) refused() (<-chan struct{}, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changeCh, d.lastErr
}

// refusedAgain returns the last refusal if the client's last two
// attempts (a second apart) were both refused: a server that is down,
// not one that was starting or restarting.
func (d *dialer) refusedAgain() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.refusals < 2 {
		return nil
	}
	return d.lastErr
}

func (d *dialer) closeAll() {
	d.mu.Lock()
	d.closed = true
	conns := d.conns
	d.conns = map[net.Conn]struct{}{}
	d.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// trackedConn is a connection the dialer made. A connection that ends
// before the server sent a byte counts as refused: a proxy or a load
// balancer in front of a stopped server accepts and closes.
type trackedConn struct {
	net.Conn
	d     *dialer
	mu    sync.Mutex
	heard bool
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	first := !c.heard
	if n > 0 {
		c.heard = true
	}
	c.mu.Unlock()
	if n == 0 && err != nil && first && driver.Classify(err) != registry.CauseNoAnswer && !errors.Is(err, net.ErrClosed) {
		c.d.setRefused(fmt.Errorf("%s closed the connection before answering: %w", c.RemoteAddr(), err))
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.d.mu.Lock()
	delete(c.d.conns, c)
	c.d.mu.Unlock()
	return c.Conn.Close()
}
