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
	// Lifecycle closes the registry when the app stops. Outside fx leave
	// it nil and Close the registry yourself.
	Lifecycle fx.Lifecycle
	Config    Config
	// Logger, if the app has one, receives the backend's logs. The app
	// owns it: this package never provides one.
	Logger *slog.Logger `optional:"true"`
	// URLMux, if the app has one, opens cfg.Registry instead of
	// registry.DefaultURLMux: for backends configured by the program.
	URLMux *registry.URLMux `optional:"true"`
}

// NewRegistry opens cfg.Registry (registry.Open) and closes it when the
// app stops. It never waits for the registry: opening does not touch
// the network.
func NewRegistry(p RegistryParams) (registry.Registry, error) {
	cfg := p.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mux := p.URLMux
	if mux == nil {
		mux = registry.DefaultURLMux()
	}
	reg, err := mux.OpenWithLogger(context.Background(), cfg.Registry, p.Logger)
	if err != nil {
		return nil, fmt.Errorf("app: open registry: %w", err)
	}
	if p.Lifecycle != nil {
		p.Lifecycle.Append(fx.StopHook(reg.Close))
	}
	return reg, nil
}

// RegistryModule provides registry.Registry, and the same value as
// registry.Registrar and registry.Discovery, from a Config.
var RegistryModule = fx.Module("wayfinder.registry",
	fx.Provide(fx.Annotate(NewRegistry,
		fx.As(fx.Self()), fx.As(new(registry.Registrar)), fx.As(new(registry.Discovery)))),
)

// ServerParams are NewServer's dependencies.
type ServerParams struct {
	fx.In
	// Lifecycle runs Start and Stop as OnStart and OnStop hooks. Outside
	// fx leave it nil and call Start and Stop yourself.
	Lifecycle fx.Lifecycle
	Config    Config
	Registrar registry.Registrar
	Services  []Service `group:"wayfinder.services"`
	// Logger, if the app has one, receives the server's logs.
	Logger *slog.Logger `optional:"true"`
}

// ServerResult is what NewServer provides: the Wayfinder server and,
// for code that registers services on it directly, its gRPC server.
type ServerResult struct {
	fx.Out
	Server *server.Server
	GRPC   *grpc.Server
}

// NewServer builds a server.Server for cfg.Service (server.New with
// Config.ServerOptions), registers the grouped services on it, and runs
// its lifecycle as OnStart/OnStop hooks: Start (listen, serve, SERVING,
// register) and Stop (NOT_SERVING, deregister, wait, GracefulStop,
// Stop), both within fx's hook timeouts.
func NewServer(p ServerParams) (ServerResult, error) {
	cfg := p.Config
	if err := cfg.Validate(); err != nil {
		return ServerResult{}, err
	}
	if cfg.Service == "" {
		return ServerResult{}, fmt.Errorf("app: no service name: set Config.Service, WAYFINDER_SERVICE or -service")
	}
	opts := cfg.ServerOptions()
	if p.Logger != nil {
		opts = append(opts, server.WithLogger(p.Logger))
	}
	s, err := server.New(p.Registrar, cfg.Service, opts...)
	if err != nil {
		return ServerResult{}, err
	}
	for _, register := range p.Services {
		register(s.GRPC())
	}
	if p.Lifecycle != nil {
		p.Lifecycle.Append(fx.Hook{OnStart: s.Start, OnStop: s.Stop})
	}
	return ServerResult{Server: s, GRPC: s.GRPC()}, nil
}

// ServerModule provides the *server.Server and its *grpc.Server, and
// makes sure the server runs.
var ServerModule = fx.Module("wayfinder.server",
	fx.Provide(NewServer),
	// The module's one Invoke, and deliberate: fx builds a provided value
	// only when something asks for it, and including ServerModule means
	// "serve", even when nothing else in the app names the server.
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
// transport credentials. Feed it with DialOptions: fx.Supply of an
// fx.Annotated option would file it under its concrete type, which the
// group of the grpc.DialOption interface never sees.
const DialOptionsGroup = `group:"wayfinder.dialoptions"`

// DialOptions adds opts to DialOptionsGroup, for example
//
//	app.DialOptions(grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
func DialOptions(opts ...grpc.DialOption) fx.Option {
	return fx.Provide(fx.Annotate(
		func() []grpc.DialOption { return opts },
		fx.ResultTags(`group:"wayfinder.dialoptions,flatten"`),
	))
}

// ClientsParams are NewClients' dependencies.
type ClientsParams struct {
	fx.In
	// Lifecycle closes the Clients when the app stops. Outside fx leave
	// it nil and Close them yourself.
	Lifecycle   fx.Lifecycle
	Config      Config
	Discovery   registry.Discovery
	DialOptions []grpc.DialOption `group:"wayfinder.dialoptions"`
	// MeterProvider, if the app has one, records the discovery metrics
	// of the Clients' watch cache; default OpenTelemetry's global
	// provider. The app owns it: this package never provides one.
	MeterProvider metric.MeterProvider `optional:"true"`
	// Logger, if the app has one, logs the watch cache's registry outages.
	Logger *slog.Logger `optional:"true"`
}

// NewClients returns a Clients whose connections close when the app
// stops. Its ClientConns dial without TLS if Config.Plaintext is set,
// unless DialOptions carry transport credentials, which come later and
// so take precedence.
func NewClients(p ClientsParams) (*Clients, error) {
	if err := p.Config.Validate(); err != nil {
		return nil, err
	}
	var copts []resolver.CacheOption
	if p.MeterProvider != nil {
		copts = append(copts, resolver.WithMeterProvider(p.MeterProvider))
	}
	if p.Logger != nil {
		copts = append(copts, resolver.WithLogger(p.Logger))
	}
	cache := resolver.NewCache(copts...)
	c := &Clients{
		builder: resolver.NewBuilder(p.Discovery, resolver.WithCache(cache), resolver.WithConnectionSubset(p.Config.Subset, p.Config.SubsetKey)),
		cache:   cache,
		conns:   map[string]*grpc.ClientConn{},
	}
	c.opts = append(c.opts, grpc.WithDefaultServiceConfig(fmt.Sprintf(`{"loadBalancingConfig":[{%q:{}}]}`, p.Config.Policy)))
	if p.Config.Plaintext {
		c.opts = append(c.opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	c.opts = append(c.opts, p.DialOptions...) // after Plaintext: explicit credentials win
	if p.Lifecycle != nil {
		p.Lifecycle.Append(fx.StopHook(c.Close))
	}
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
	opts := append(c.builder.DialOptions(), c.opts...) // the resolver, and its interceptors naming service and registry when there is no instance
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
