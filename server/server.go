package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/orca"
	"google.golang.org/grpc/reflection"

	"github.com/wayfinder-rpc/wayfinder/internal/backoff"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// Defaults for the stop sequence.
const (
	DefaultDrainTimeout    = 5 * time.Second
	DefaultGracefulTimeout = 10 * time.Second
	DefaultRegisterTimeout = 5 * time.Second
)

// The registration retry's backoff: 100ms doubling to 10s, each delay
// drawn from the upper half of its step (package internal/backoff).
const (
	registerBackoffBase = 100 * time.Millisecond
	registerBackoffMax  = 10 * time.Second
)

// ErrStarted is returned by Start on a server that was already started.
var ErrStarted = errors.New("server: already started")

// registerReminder is how often a registration that keeps failing is
// logged again at Warn; the failures in between go to Debug.
const registerReminder = time.Minute

// Server is a gRPC server with a registry lifecycle:
//
// Start: listen; serve, with the grpc.health.v1 service; set SERVING
// under "", the registry service name and every registered gRPC
// service's fully-qualified name (HealthNames); then register, in the
// background, so that no client is sent to an instance that cannot
// answer and no registry can hold up the start.
//
// Stop, within the stop context: set NOT_SERVING; deregister (bounded by
// the register timeout; skipped if no registration can have reached the
// registry, and a registry that is down is reported and skipped); wait until the instance is
// gone from this process's own watch view of its service, bounded by the
// drain timeout, so that clients had the chance to see it leave; then
// GracefulStop, bounded by the graceful timeout; then Stop. A registry
// outage never prevents stopping.
type Server struct {
	reg    registry.Registrar
	opts   options
	grpc   *grpc.Server
	health *health.Server
	load   *loadReporter // nil without WithLoadReports

	mu       sync.Mutex // guards the fields below
	started  bool
	stopped  bool
	lis      net.Listener
	inst     registry.Instance
	watcher  registry.Watcher // this process's view of its own service
	regDone  chan struct{}    // closed when the registration loop ends
	regCtx   context.CancelFunc
	serveErr chan error
	// reached: a registration attempt may have reached the registry
	// (it succeeded, or its outcome is unknown), so Stop deregisters.
	reached bool

	registered chan struct{} // closed once the instance is registered
}

type options struct {
	service         string
	id              string
	listen          string
	advertise       string
	version, zone   string
	weight          int
	tags            []string
	metadata        map[string]string
	drainTimeout    time.Duration
	drainDelay      time.Duration
	gracefulTimeout time.Duration
	registerTimeout time.Duration
	grpcOpts        []grpc.ServerOption
	logger          *slog.Logger
	reflection      bool
	loadReports     bool
}

// Option configures a Server.
type Option func(*options)

// WithListenAddress sets the address to listen on (default "127.0.0.1:0").
func WithListenAddress(addr string) Option { return func(o *options) { o.listen = addr } }

// WithAdvertiseAddress sets the address registered for clients. By
// default it is the listener's address; a wildcard listener (":8080")
// advertises the host name with the port.
func WithAdvertiseAddress(addr string) Option { return func(o *options) { o.advertise = addr } }

// WithID sets the instance ID. The default is "<service>-<random>", unique
// per process start, so that replicas never overwrite each other.
func WithID(id string) Option { return func(o *options) { o.id = id } }

// WithVersion, WithZone, WithWeight, WithTags and WithMetadata set the
// registered instance's attributes.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithZone sets the instance's zone.
func WithZone(z string) Option { return func(o *options) { o.zone = z } }

// WithWeight sets the instance's weight.
func WithWeight(w int) Option { return func(o *options) { o.weight = w } }

// WithTags sets the instance's tags.
func WithTags(tags ...string) Option { return func(o *options) { o.tags = slices.Clone(tags) } }

// WithMetadata sets the instance's metadata.
func WithMetadata(md map[string]string) Option {
	return func(o *options) {
		o.metadata = map[string]string{}
		for k, v := range md {
			o.metadata[k] = v
		}
	}
}

// WithDrainTimeout bounds the wait for the instance to leave the watch
// view during Stop (default 5s).
func WithDrainTimeout(d time.Duration) Option { return func(o *options) { o.drainTimeout = d } }

// WithDrainDelay adds a fixed wait after the instance left the watch view,
// for clients in other processes whose view may lag (default 0).
func WithDrainDelay(d time.Duration) Option { return func(o *options) { o.drainDelay = d } }

// WithGracefulTimeout bounds GracefulStop before Stop (default 10s).
func WithGracefulTimeout(d time.Duration) Option { return func(o *options) { o.gracefulTimeout = d } }

// WithRegisterTimeout bounds each registration attempt (default 5s).
func WithRegisterTimeout(d time.Duration) Option { return func(o *options) { o.registerTimeout = d } }

// WithGRPCOptions passes options to grpc.NewServer.
func WithGRPCOptions(opts ...grpc.ServerOption) Option {
	return func(o *options) { o.grpcOpts = append(o.grpcOpts, opts...) }
}

// WithReflection registers the gRPC server reflection service (v1 and
// v1alpha), so that grpcurl list/describe and wayfinder call work without
// compiled-in stubs. Off by default: reflection describes every
// registered service to whoever can reach the port.
func WithReflection() Option { return func(o *options) { o.reflection = true } }

// WithLoadReports makes the server record and serve ORCA load reports
// (gRFC A51, package google.golang.org/grpc/orca), which load-balancing
// policies such as grpc-go's weighted_round_robin weigh backends by:
//
//   - in every call's trailer (endpoint-load-metrics-bin), and
//   - out of band, by the xds.service.orca.v3.OpenRcaService stream, at
//     the interval the client asks for and at most every 30 seconds (the
//     minimum grpc's service enforces).
//
// A report carries the process's CPU utilisation (CPU time over wall
// time across GOMAXPROCS, averaged since the previous sample and sampled
// at most once a second; not on platforms without getrusage), the rates
// of calls and failed calls (rps_fractional, eps; sampled the same way),
// the calls in flight (named metric InFlightMetric), and what the application
// records: server-wide on LoadReports(), per call on
// orca.CallMetricsRecorderFromContext(ctx) in a handler, which overrides
// the server-wide values in that call's trailer. Off by default: each
// call pays an allocation and an encoded report in its trailer.
func WithLoadReports() Option { return func(o *options) { o.loadReports = true } }

// WithLogger sets the logger. The default is slog.Default() at the time
// of New, which hears only what an operator must act on: a registration
// that keeps failing (Warn, the first failure and then once a minute),
// an instance the registry refuses (Error), and a drain or graceful stop
// that timed out (Warn). Routine events go to Debug. Pass
// slog.New(slog.DiscardHandler) for silence.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// New returns a server for service that registers through reg, which
// must not be nil. Register gRPC services on GRPC() before Start. If reg
// is also a registry.Discovery, Stop waits for the instance to leave its
// watch view.
func New(reg registry.Registrar, service string, opts ...Option) (*Server, error) {
	if reg == nil {
		return nil, errors.New("server: New: nil registry.Registrar")
	}
	o := options{
		service:         service,
		listen:          "127.0.0.1:0",
		drainTimeout:    DefaultDrainTimeout,
		gracefulTimeout: DefaultGracefulTimeout,
		registerTimeout: DefaultRegisterTimeout,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if err := registry.ValidateService(service); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if o.id == "" {
		o.id = service + "-" + registry.NewID()[:12]
	}
	s := &Server{reg: reg, opts: o, health: health.NewServer(), registered: make(chan struct{})}
	grpcOpts := o.grpcOpts
	if o.loadReports {
		s.load = newLoadReporter()
		grpcOpts = append(s.load.serverOptions(), grpcOpts...)
	}
	s.grpc = grpc.NewServer(grpcOpts...)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	if s.load != nil {
		if err := orca.Register(s.grpc, orca.ServiceOptions{ServerMetricsProvider: s.load}); err != nil {
			return nil, fmt.Errorf("server: ORCA service: %w", err) // only for a nil provider: a bug
		}
	}
	if o.reflection {
		reflection.Register(s.grpc)
	}
	// NOT_SERVING until Start has the server listening.
	s.setHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	return s, nil
}

// HealthNames returns the names the server publishes its health under:
// "" (the whole server), the registry service name, and the
// fully-qualified name of every gRPC service registered on GRPC()
// (such as "wayfinder.examples.hello.HelloService"), as grpc-health-probe,
// Kubernetes gRPC probes, Consul gRPC checks and grpc-go's client-side
// health checking ask by. Services registered after Start are not
// included: register them before.
func (s *Server) HealthNames() []string {
	names := []string{"", s.opts.service}
	for name := range s.grpc.GetServiceInfo() {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// setHealth sets st under every name of HealthNames.
func (s *Server) setHealth(st healthpb.HealthCheckResponse_ServingStatus) {
	for _, name := range s.HealthNames() {
		s.health.SetServingStatus(name, st)
	}
}

// LoadReports returns the recorder of the server-wide metrics that ORCA
// load reports carry (application utilisation, named utilisations, memory,
// QPS, EPS; and CPU, which replaces the measured one), or nil if the
// server was not built WithLoadReports. Safe for concurrent use; a value
// set stays in every report until deleted.
func (s *Server) LoadReports() orca.ServerMetricsRecorder {
	if s.load == nil {
		return nil
	}
	return s.load.app
}

// GRPC returns the gRPC server, to register services on before Start.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Health returns the grpc.health.v1 server. Start sets SERVING and Stop
// NOT_SERVING under every name of HealthNames. Setting a status other
// than SERVING on "" marks the instance unhealthy in registries whose
// checks follow it.
func (s *Server) Health() *health.Server { return s.health }

// Instance returns the registered instance; valid after Start.
func (s *Server) Instance() registry.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inst.Clone()
}

// Addr returns the listener's address; valid after Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lis == nil {
		return nil
	}
	return s.lis.Addr()
}

// Start listens, serves, marks the server SERVING and registers it. It
// waits for the first registration attempt only, so that with a healthy
// registry the instance is discoverable when Start returns; that attempt
// is bounded by ctx and by the register timeout (WithRegisterTimeout,
// DefaultRegisterTimeout), which is Start's cost against a registry that
// never answers; a refused connection or a wrong address fails the
// attempt at once. Whatever the attempt's outcome, Start returns nil once
// the server serves: the registration is a loop owned by the server that
// never gives up, retried with jittered backoff (100ms doubling to 10s)
// until it succeeds or Stop is called, so a registry that is down,
// frozen or wrong never prevents a service from starting. Registered
// reports when it succeeded; failures are logged (see WithLogger).
// Invalid instance attributes, an instance the registry refuses as
// invalid, and a listen failure are returned as errors.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return ErrStarted
	}
	lis, err := net.Listen("tcp", s.opts.listen)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("server: listen on %s: %w", s.opts.listen, err)
	}
	inst, err := s.instance(lis.Addr())
	if err != nil {
		s.mu.Unlock()
		lis.Close()
		return err
	}
	s.started, s.lis, s.inst = true, lis, inst
	s.serveErr = make(chan error, 1)
	go func() { s.serveErr <- s.grpc.Serve(lis) }()

	s.setHealth(healthpb.HealthCheckResponse_SERVING)

	if d, ok := s.reg.(registry.Discovery); ok {
		if w, err := d.Watch(ctx, s.opts.service); err == nil {
			s.watcher = w
		} else {
			s.opts.logger.Warn("server: cannot watch own service; stop will not wait for it to leave", "service", s.opts.service, "err", err)
		}
	}
	regCtx, cancel := context.WithCancel(context.Background())
	s.regCtx, s.regDone = cancel, make(chan struct{})
	first := make(chan error, 1)
	go s.registerLoop(regCtx, inst, first)
	s.mu.Unlock()

	select {
	case err := <-first:
		if errors.Is(err, registry.ErrInvalidInstance) {
			// The backend refused the instance: retrying cannot help.
			_ = s.Stop(context.Background())
			return fmt.Errorf("server: register: %w", err)
		}
	case <-ctx.Done():
	}
	return nil
}

// Registered returns a channel closed once the instance is registered.
// It stays open while the registry cannot be reached, and for good if
// the server stops first or the registry refuses the instance.
func (s *Server) Registered() <-chan struct{} { return s.registered }

func (s *Server) instance(addr net.Addr) (registry.Instance, error) {
	adv := s.opts.advertise
	if adv == "" {
		tcp, _ := addr.(*net.TCPAddr)
		host, port, _ := net.SplitHostPort(addr.String())
		if tcp != nil && tcp.IP.IsUnspecified() {
			h, err := os.Hostname()
			if err != nil {
				return registry.Instance{}, fmt.Errorf("server: listening on %s and no host name to advertise: %w", addr, err)
			}
			host = h
		}
		adv = net.JoinHostPort(host, port)
	}
	inst := registry.Instance{
		ID: s.opts.id, Service: s.opts.service, Address: adv,
		Version: s.opts.version, Zone: s.opts.zone, Weight: s.opts.weight,
		Tags: slices.Clone(s.opts.tags), Metadata: s.opts.metadata,
	}
	if err := inst.Validate(); err != nil {
		return registry.Instance{}, fmt.Errorf("server: %w", err)
	}
	return inst, nil
}

// registerLoop registers the instance, retrying with jittered backoff
// (100ms doubling to 10s) until it succeeds or ctx is done. The first
// attempt's result goes to first, for Start. Failures are logged, not
// returned (the retry is what handles them): the first at Warn, then at Debug with a Warn
// reminder every registerReminder, and a success after failures at Info.
func (s *Server) registerLoop(ctx context.Context, inst registry.Instance, first chan<- error) {
	defer close(s.regDone)
	log := s.opts.logger.With("instance", inst.String())
	b := backoff.Backoff{Base: registerBackoffBase, Max: registerBackoffMax}
	var since, warned time.Time
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.opts.registerTimeout)
		var err error
		if hr, ok := s.reg.(registry.HealthRegistrar); ok {
			err = hr.RegisterWithHealth(actx, inst, s.healthy)
		} else {
			err = s.reg.Register(actx, inst)
		}
		cancel()
		if attempt == 1 {
			first <- err
		}
		if mayHaveReached(err) {
			s.mu.Lock()
			s.reached = true
			s.mu.Unlock()
		}
		switch {
		case err == nil:
			if since.IsZero() {
				log.Debug("server: registered")
			} else {
				log.Info("server: registered after failing", "attempts", attempt, "for", time.Since(since).Round(time.Millisecond))
			}
			close(s.registered) // after the log line, so that a reader of Registered finds it
			return
		case ctx.Err() != nil:
			return
		case errors.Is(err, registry.ErrInvalidInstance):
			// The backend refused the instance: retrying cannot help.
			// Start returns the first attempt's error; a later one is
			// only logged.
			if attempt > 1 {
				log.Error("server: the registry refused the instance; not registered", "err", err)
			}
			return
		}
		d := b.Next()
		now := time.Now()
		switch {
		case since.IsZero():
			since, warned = now, now
			log.Warn("server: register failed; retrying in the background until it succeeds", "err", err, "in", d)
		case now.Sub(warned) >= registerReminder:
			warned = now
			log.Warn("server: register still failing; retrying", "attempts", attempt, "for", now.Sub(since).Round(time.Second), "err", err, "in", d)
		default:
			log.Debug("server: register failed; retrying", "attempts", attempt, "err", err, "in", d)
		}
		if !backoff.Sleep(ctx, d) {
			return
		}
	}
}

// mayHaveReached reports whether a registration that ended with err may
// have been applied by the registry: it succeeded, or its outcome is
// unknown (no answer in time, cancelled mid-flight, an error the backend
// does not classify). An instance refused as invalid, a refused
// connection, something that is not a registry and an error the
// registry answered with were not applied.
func mayHaveReached(err error) bool {
	if err == nil {
		return true
	}
	if errors.Is(err, registry.ErrInvalidInstance) {
		return false
	}
	switch driver.Classify(err) { // the backend's UnavailableError, else the network error's cause
	case registry.CauseRefused, registry.CauseNotRegistry, registry.CauseServer:
		return false
	}
	return true
}

// healthy reports the grpc.health.v1 status of the whole server (""),
// for registries whose checks the registrant feeds.
func (s *Server) healthy(ctx context.Context, _ registry.Instance) error {
	resp, err := s.health.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("server: grpc.health.v1 status %v", st)
	}
	return nil
}

// Stop drains and stops the server, in the order described on Server,
// within ctx. It returns the first error met, after doing every step; a
// registry error does not stop the sequence. Stop is idempotent.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.stopped {
		s.stopped = true
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	inst, watcher := s.inst, s.watcher
	s.mu.Unlock()
	log := s.opts.logger.With("instance", inst.String())

	// 1. Health first, so checks that follow it start failing.
	s.setHealth(healthpb.HealthCheckResponse_NOT_SERVING)

	// 2. Stop retrying registration, then deregister, bounded; but only
	// what may be registered: nothing to withdraw, nothing to wait for.
	s.regCtx()
	<-s.regDone
	s.mu.Lock()
	reached := s.reached
	s.mu.Unlock()
	var errs []error
	if reached {
		dctx, cancel := context.WithTimeout(ctx, s.opts.registerTimeout)
		if err := s.reg.Deregister(dctx, inst); err != nil {
			// Returned, not logged: the caller handles it once. Stopping goes on.
			errs = append(errs, fmt.Errorf("server: deregister: %w", err))
		}
		cancel()
	}

	// 3. Wait until clients had the chance to see it leave.
	if watcher != nil {
		if reached && len(errs) == 0 {
			wctx, cancel := context.WithTimeout(ctx, s.opts.drainTimeout)
			if err := waitGone(wctx, watcher, inst.ID); err != nil {
				log.Warn("server: instance still in the watch view at the drain timeout", "err", err)
			}
			cancel()
		}
		watcher.Close()
	}
	backoff.Sleep(ctx, s.opts.drainDelay) // a stop context that ends cuts it short

	// 4. GracefulStop, bounded; 5. Stop.
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	gctx, cancel := context.WithTimeout(ctx, s.opts.gracefulTimeout)
	defer cancel()
	select {
	case <-done:
	case <-gctx.Done():
		log.Warn("server: graceful stop timed out; closing connections", "err", gctx.Err())
	}
	s.grpc.Stop()
	<-done
	s.health.Shutdown()
	if err := <-s.serveErr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		errs = append(errs, fmt.Errorf("server: serve: %w", err))
	}
	return errors.Join(errs...)
}

func waitGone(ctx context.Context, w registry.Watcher, id string) error {
	for {
		insts, err := w.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, registry.ErrClosed) {
				return err
			}
			continue
		}
		if !slices.ContainsFunc(insts, func(i registry.Instance) bool { return i.ID == id }) {
			return nil
		}
	}
}

// String describes the server for logs.
func (s *Server) String() string {
	inst := s.Instance()
	return strings.TrimSpace(fmt.Sprintf("%s %s", inst.Service, inst.Address))
}
