package main

import (
	"context"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/goleak"

	"github.com/wayfinder-rpc/wayfinder/app"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestBoth runs the example as `go run ./examples/fx` does and checks the
// client's calls all succeeded (exit code 0).
func TestBoth(t *testing.T) {
	cfg := app.DefaultConfig()
	cfg.Service, cfg.Registry = "hello", "mem://fx-example"
	opts, err := options(cfg, "both", 3)
	if err != nil {
		t.Fatal(err)
	}
	a := fx.New(opts...)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatalf("Start = %v", err)
	}
	var sig fx.ShutdownSignal
	select {
	case sig = <-a.Wait():
	case <-ctx.Done():
		t.Fatal("client never finished")
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	if sig.ExitCode != 0 {
		t.Fatalf("exit code %d, want 0", sig.ExitCode)
	}
	if _, err := options(cfg, "sideways", 1); err == nil {
		t.Fatalf("options(-role sideways) = nil error")
	}
}
