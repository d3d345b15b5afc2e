// Package app assembles Wayfinder services with go.uber.org/fx.
//
//	fx.New(
//		fx.Supply(cfg),                 // app.Config: registry URL, service, zone, policy, ...
//		app.RegistryModule,             // registry.Registry, Registrar, Discovery
//		app.ServerModule,               // *server.Server and *grpc.Server, run by OnStart/OnStop
//		app.ClientModule,               // *app.Clients: ClientConns to named services
//		app.MetricsModule,              // optional: wayfinder.lb.* metrics (package lbmetrics)
//		fx.Provide(app.AsService(newHelloService)),
//	)
//
// Swapping Consul for etcd is a change of Config.Registry (or of
// WAYFINDER_REGISTRY), nothing else, provided the backend's package is
// imported for its URL scheme.
//
// # Modules
//
// The modules follow fx's own conventions for modules. They are thin
// adapters over exported constructors that take parameter objects:
// [NewRegistry] ([RegistryParams]) over [registry.Open], [NewServer]
// ([ServerParams], returning the result object [ServerResult]) over
// [server.New] with [Config.ServerOptions], [NewClients] ([ClientsParams])
// over [resolver.NewBuilder], and [RegisterMetrics]
// ([RegisterMetricsParams]) over [lbmetrics.Register]. Outside fx, call
// the constructors with a nil Lifecycle and start, stop and close what
// they return yourself, or call the packages underneath directly.
//
// The modules provide only what they own: the registry, the server and
// the Clients. The *slog.Logger and the metric.MeterProvider are the
// application's; the modules take them if the app provides them and
// otherwise discard logs and use OpenTelemetry's global provider. There
// are two fx.Invoke calls, each the reason its module exists:
// ServerModule's makes the server run even when nothing else names it,
// and MetricsModule's registers the metrics.
//
// Feed the value groups with [AsService] (gRPC services), [DialOptions]
// (extra grpc.DialOptions for Clients) and [MetricsOptionsGroup]
// (lbmetrics options).
//
// # Configuration
//
// [DefaultConfig] fills a [Config]; [Config.FromEnv] overlays the WAYFINDER_*
// environment variables ([Env] lists them) and [Config.RegisterFlags]
// binds flags (-registry, -service, ...). Each field's variable, flag,
// default and help are defined once, in one table, so -help lists them
// all. A malformed value is an error naming the variable or flag;
// [Config.Validate] rejects an unknown registry scheme or parameter, an
// unregistered policy, a bad service name and negative timeouts or
// subset sizes.
//
// # Security
//
// Config.Plaintext defaults to true: Clients dial without TLS. This is
// deliberate. A [server.Server] serves without TLS unless it is given
// credentials (server.WithGRPCOptions with grpc.Creds), and the default
// registry is the in-process mem://, so the defaults make a working
// program on one machine or in tests, where most programs start. In
// production give Clients transport credentials with [DialOptions]; they
// come after Plaintext and take precedence over it. To make forgotten
// credentials an error rather than a plaintext connection, set
// Plaintext false (WAYFINDER_PLAINTEXT=false, -plaintext=false): then
// [Clients.Conn] fails unless credentials were given.
//
// # Errors
//
// A bad registry URL, service name or policy fails the app's start with
// an error that names it; a port in use fails Start. A registry that is
// down fails neither: the server serves and its registration reconciles
// when the registry returns, and stopping never waits on it beyond the
// stop context; a failed deregistration is returned by the stop hook.
package app
