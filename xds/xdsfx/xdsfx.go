// Package xdsfx runs an xDS server (package xds) in a go.uber.org/fx
// application, over the registry.Discovery the app provides (such as
// app.RegistryModule's):
//
//	fx.New(
//		fx.Supply(cfg),                 // app.Config: Registry "consul://127.0.0.1:8500", ...
//		app.RegistryModule,
//		fx.Supply(xdsfx.Config{Listen: "127.0.0.1:18000"}),
//		xdsfx.Module,
//	)
//
// Module is a thin adapter over [NewServer], itself over [xds.New]:
// OnStart listens and serves, OnStop closes the server.
package xdsfx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"go.uber.org/fx"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

// Config configures the server.
type Config struct {
	// Listen is the host:port to serve xDS on. Required.
	Listen string
	// Options are passed to xds.New, such as xds.WithCanary.
	Options []xds.Option
}

// Params are NewServer's dependencies.
type Params struct {
	fx.In
	// Lifecycle starts and stops the server. Outside fx leave it nil and
	// Serve and Close the server yourself.
	Lifecycle fx.Lifecycle
	Discovery registry.Discovery
	Config    Config
	// Logger, if the app has one, receives the server's warnings.
	Logger *slog.Logger `optional:"true"`
}

// NewServer returns an xds.Server over p.Discovery that serves on
// p.Config.Listen from OnStart (which fails if it cannot listen) until
// OnStop.
func NewServer(p Params) (*xds.Server, error) {
	if p.Config.Listen == "" {
		return nil, errors.New("xdsfx: Config.Listen is required")
	}
	opts := append([]xds.Option(nil), p.Config.Options...)
	if p.Logger != nil {
		opts = append(opts, xds.WithLogger(p.Logger))
	}
	s, err := xds.New(p.Discovery, opts...)
	if err != nil {
		return nil, err
	}
	if p.Lifecycle == nil {
		return s, nil
	}
	served := make(chan error, 1)
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error {
			lis, err := net.Listen("tcp", p.Config.Listen)
			if err != nil {
				return fmt.Errorf("xdsfx: %w", err)
			}
			go func() { served <- s.Serve(lis) }()
			return nil
		},
		OnStop: func(ctx context.Context) error {
			if err := s.Close(); err != nil {
				return err
			}
			select {
			case err := <-served:
				if errors.Is(err, registry.ErrClosed) {
					return nil // stopped before Serve began
				}
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	})
	return s, nil
}

// Module provides *xds.Server and runs it with the app.
var Module = fx.Module("wayfinder.xds",
	fx.Provide(NewServer),
	// The server runs even when nothing else names it.
	fx.Invoke(func(*xds.Server) {}),
)
