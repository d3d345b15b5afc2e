package xdsfx_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/wayfinder-rpc/wayfinder/app"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/leak"
	"github.com/wayfinder-rpc/wayfinder/xds"
	"github.com/wayfinder-rpc/wayfinder/xds/xdsfx"
)

func TestMain(m *testing.M) { leak.VerifyTestMain(m, func() {}) }

// TestModule: the module serves from OnStart and stops at OnStop; a
// port already taken fails the start.
func TestModule(t *testing.T) {
	var srv *xds.Server
	a := fxtest.New(t,
		fx.Supply(appConfig()),
		app.RegistryModule,
		fx.Supply(xdsfx.Config{Listen: "127.0.0.1:0"}),
		xdsfx.Module,
		fx.Populate(&srv),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	if srv == nil {
		t.Fatal("no *xds.Server provided")
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
}

func TestModuleNeedsListen(t *testing.T) {
	err := fx.New(
		fx.NopLogger,
		fx.Supply(appConfig()),
		app.RegistryModule,
		fx.Supply(xdsfx.Config{}),
		xdsfx.Module,
	).Err()
	if err == nil {
		t.Fatal("fx.New without Config.Listen: no error")
	}
}

func appConfig() app.Config {
	cfg := app.DefaultConfig()
	cfg.Registry, cfg.Service = "mem://xdsfx-test", "hello"
	return cfg
}
