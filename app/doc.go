// Package app assembles Wayfinder services with go.uber.org/fx.
//
// The modules are thin adapters over exported constructors — NewRegistry,
// NewServer, NewClients — so a program without fx does the same in plain
// Go with registry.Open, server.New and resolver.NewBuilder.
//
//	fx.New(
//		fx.Supply(cfg),                 // app.Config: registry URL, service, zone, policy, ...
//		app.RegistryModule,             // registry.Registry, Registrar, Discovery
//		app.ServerModule,               // *server.Server with its lifecycle on OnStart/OnStop
//		app.ClientModule,               // *app.Clients: ClientConns to named services
//		app.MetricsModule,              // optional: wayfinder.lb.* metrics (package lbmetrics)
//		fx.Provide(app.AsService(newHelloService)),
//	)
//
// Swapping Consul for etcd is a change of Config.Registry (or of
// WAYFINDER_REGISTRY), nothing else, provided the backend's package is
// imported for its URL scheme.
//
// # Errors
//
// A bad registry URL, service name or policy fails the app's start with
// an error that names it; a port in use fails Start. A registry that is
// down fails neither: the server serves and its registration reconciles
// when the registry returns, and stopping never waits on it beyond the
// stop context.
package app
