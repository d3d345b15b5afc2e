package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"go.opentelemetry.io/otel/metric"
	"go.uber.org/fx"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// ServicesGroup is the value group that collects gRPC services.
const ServicesGroup = `group:"wayfinder.services"`

// Service registers gRPC services on a server, for example
//
//	func(s grpc.ServiceRegistrar) { hellopb.RegisterHelloServiceServer(s, impl) }
type Service func(grpc.ServiceRegistrar)

// AsService annotates a constructor returning a Service so that it joins
// the group the server module registers.
func AsService(constructor any) any {
	return fx.Annotate(constructor, fx.ResultTags(ServicesGroup))
}

// RegistryParams are NewRegistry's dependencies.
type RegistryParams struct {
	fx.In
	Lifecycle fx.Lifecycle
	Config    Config
	Logger    *slog.Logger `optional:"true"` // for the backend's logs
}

// NewRegistry opens cfg.Registry and closes it when the app stops. It
// never waits for the registry: opening does not touch the network.
func NewRegistry(p RegistryParams) (registry.Registry, error) {
	lc, cfg := p.Lifecycle, p.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx := context.Background()
	if p.Logger != nil {
		ctx = registry.ContextWithLogger(ctx, p.Logger)
	}
	reg, err := registry.Open(ctx, cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("app: open registry: %w", err)
	}
	lc.Append(fx.StopHook(reg.Close))
	return reg, nil
}

// RegistryModule provides registry.Registry, and the same value as
// registry.Registrar and registry.Discovery, from a Config.
var RegistryModule = fx.Module("wayfinder.registry",
	fx.Provide(
		NewRegistry,
		func(r registry.Registry) registry.Registrar { return r },
		func(r registry.Registry) registry.Discovery { return r },
	),
)

// ServerParams are NewServer's dependencies.
type ServerParams struct {
	fx.In
	Lifecycle fx.Lifecycle
	Config    Config
	Registrar registry.Registrar
	Services  []Service    `group:"wayfinder.services"`
	Logger    *slog.Logger `optional:"true"`
}

// NewServer builds a server.Server for cfg.Service, registers the
// grouped services on it, and runs its lifecycle as OnStart/OnStop
// hooks: Start (listen, serve, SERVING, register) and Stop (NOT_SERVING,
// deregister, wait, GracefulStop, Stop), both within fx's hook timeouts.
func NewServer(p ServerParams) (*server.Server, error) {
	cfg := p.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Service == "" {
		return nil, fmt.Errorf("app: no service name: set Config.Service, WAYFINDER_SERVICE or -service")
	}
	opts := cfg.ServerOptions()
	if p.Logger != nil {
		opts = append(opts, server.WithLogger(p.Logger))
	}
	s, err := server.New(p.Registrar, cfg.Service, opts...)
	if err != nil {
		return nil, err
	}
	for _, register := range p.Services {
		register(s.GRPC())
	}
	p.Lifecycle.Append(fx.Hook{OnStart: s.Start, OnStop: s.Stop})
	return s, nil
}

// ServerModule provides the *server.Server and its *grpc.Server, and
// makes sure it starts.
var ServerModule = fx.Module("wayfinder.server",
	fx.Provide(NewServer, func(s *server.Server) *grpc.Server { return s.GRPC() }),
	fx.Invoke(func(*server.Server) {}),
)

// Clients hands out ClientConns to named services through the Wayfinder
// resolver over the app's registry, with the configured policy. All
// ClientConns share one watch per service.
type Clients struct {
	builder *resolver.Builder
	cache   *resolver.Cache
	opts    []grpc.DialOption

	mu    sync.Mutex // guards conns
	conns map[string]*grpc.ClientConn
}

// DialOptionsGroup collects extra grpc.DialOptions for Clients, such as
// transport credentials.
const DialOptionsGroup = `group:"wayfinder.dialoptions"`

// ClientParams are NewClients' dependencies.
type ClientParams struct {
	fx.In
	Lifecycle   fx.Lifecycle
	Config      Config
	Discovery   registry.Discovery
	DialOptions []grpc.DialOption `group:"wayfinder.dialoptions"`
	// MeterProvider, if provided, records the discovery metrics of the
	// Clients' watch cache; default OpenTelemetry's global provider.
	MeterProvider metric.MeterProvider `optional:"true"`
	// Logger, if provided, logs the watch cache's registry outages.
	Logger *slog.Logger `optional:"true"`
}

// NewClients returns a Clients whose connections close when the app stops.
func NewClients(p ClientParams) (*Clients, error) {
	if err := p.Config.Validate(); err != nil {
		return nil, err
	}
	var copts []resolver.CacheOption
	if p.MeterProvider != nil {
		copts = append(copts, resolver.WithMeterProvider(p.MeterProvider))
	}
	if p.Logger != nil {
		copts = append(copts, resolver.WithCacheLogger(p.Logger))
	}
	cache := resolver.NewCache(copts...)
	c := &Clients{
		builder: resolver.NewBuilder(p.Discovery, resolver.WithCache(cache), resolver.WithSubset(p.Config.Subset, p.Config.SubsetKey)),
		cache:   cache,
		conns:   map[string]*grpc.ClientConn{},
	}
	c.opts = append(c.opts, grpc.WithDefaultServiceConfig(fmt.Sprintf(`{"loadBalancingConfig":[{%q:{}}]}`, p.Config.Policy)))
	if p.Config.Plaintext {
		c.opts = append(c.opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	c.opts = append(c.opts, p.DialOptions...)
	p.Lifecycle.Append(fx.StopHook(c.Close))
	return c, nil
}

// Conn returns the ClientConn for service, creating it on first use. It
// never blocks: a service without instances fails RPCs, not Conn.
func (c *Clients) Conn(service string) (*grpc.ClientConn, error) {
	if err := registry.ValidateService(service); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[service]; ok {
		return cc, nil
	}
	opts := append([]grpc.DialOption{grpc.WithResolvers(c.builder)}, c.opts...)
	cc, err := grpc.NewClient(resolver.DefaultScheme+":///"+service, opts...)
	if err != nil {
		return nil, fmt.Errorf("app: dial %q: %w", service, err)
	}
	c.conns[service] = cc
	return cc, nil
}

// Close closes every ClientConn and the watch cache.
func (c *Clients) Close() error {
	c.mu.Lock()
	conns := c.conns
	c.conns = map[string]*grpc.ClientConn{}
	c.mu.Unlock()
	for _, cc := range conns {
		cc.Close()
	}
	return c.cache.Close()
}

// ClientModule provides *Clients.
var ClientModule = fx.Module("wayfinder.client", fx.Provide(NewClients))
