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
	"google.golang.org/grpc/reflection"

	"github.com/wayfinder-rpc/wayfinder/internal/backoff"
	"github.com/wayfinder-rpc/wayfinder/registry"
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

// Server is a gRPC server with a registry lifecycle:
//
// Start: listen; serve, with the grpc.health.v1 service; set SERVING
// under "", the registry service name and every registered gRPC
// service's fully-qualified name (HealthNames); then register, so that no client is sent to an instance that cannot answer.
//
// Stop, within the stop context: set NOT_SERVING; deregister (bounded: a
// registry that is down is logged and skipped); wait until the instance is
// gone from this process's own watch view of its service, bounded by the
// drain timeout, so that clients had the chance to see it leave; then
// GracefulStop, bounded by the graceful timeout; then Stop. A registry
// outage never prevents stopping.
type Server struct {
	reg    registry.Registrar
	opts   options
	grpc   *grpc.Server
	health *health.Server

	mu       sync.Mutex // guards the fields below
	started  bool
	stopped  bool
	lis      net.Listener
	inst     registry.Instance
	watcher  registry.Watcher // this process's view of its own service
	regDone  chan struct{}    // closed when the registration loop ends
	regCtx   context.CancelFunc
	serveErr chan error
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

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// New returns a server for service that registers through reg. Register
// gRPC services on GRPC() before Start. If reg is also a
// registry.Discovery, Stop waits for the instance to leave its watch view.
func New(reg registry.Registrar, service string, opts ...Option) (*Server, error) {
	o := options{
		service:         service,
		listen:          "127.0.0.1:0",
		drainTimeout:    DefaultDrainTimeout,
		gracefulTimeout: DefaultGracefulTimeout,
		registerTimeout: DefaultRegisterTimeout,
		logger:          slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := registry.ValidateService(service); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if o.id == "" {
		o.id = service + "-" + registry.NewID()[:12]
	}
	s := &Server{reg: reg, opts: o, grpc: grpc.NewServer(o.grpcOpts...), health: health.NewServer()}
	healthpb.RegisterHealthServer(s.grpc, s.health)
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
// returns once the server is serving; if the registry is unreachable the
// registration keeps being retried in the background (jittered backoff)
// until it succeeds or Stop is called, so a registry outage never
// prevents a service from starting. Invalid instance attributes and a
// listen failure are returned as errors.
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
// attempt's result goes to first.
func (s *Server) registerLoop(ctx context.Context, inst registry.Instance, first chan<- error) {
	defer close(s.regDone)
	b := backoff.Backoff{Base: registerBackoffBase, Max: registerBackoffMax}
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.opts.registerTimeout)
		var err error
		if hr, ok := s.reg.(registry.HealthRegistrar); ok {
			err = hr.RegisterWithHealth(actx, inst, s.healthy)
		} else {
			err = s.reg.Register(actx, inst)
		}
		cancel()
		if attempt == 0 {
			first <- err
		}
		if err == nil {
			s.opts.logger.Info("server: registered", "instance", inst.String())
			return
		}
		if errors.Is(err, registry.ErrInvalidInstance) || ctx.Err() != nil {
			return
		}
		d := b.Next()
		// Logged, not returned: Start has returned already, and the retry
		// is what handles the error.
		s.opts.logger.Warn("server: register failed; retrying", "instance", inst.String(), "err", err, "in", d)
		if !backoff.Sleep(ctx, d) {
			return
		}
	}
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

	// 2. Stop retrying registration, then deregister, bounded.
	s.regCtx()
	<-s.regDone
	var errs []error
	dctx, cancel := context.WithTimeout(ctx, s.opts.registerTimeout)
	if err := s.reg.Deregister(dctx, inst); err != nil {
		// Returned, not logged: the caller handles it once. Stopping goes on.
		errs = append(errs, fmt.Errorf("server: deregister: %w", err))
	}
	cancel()

	// 3. Wait until clients had the chance to see it leave.
	if watcher != nil {
		if len(errs) == 0 {
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
