package registry_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

func TestContextLogger(t *testing.T) {
	if l := registry.LoggerFromContext(context.Background()); l != nil {
		t.Errorf("LoggerFromContext(no logger) = %v, want nil", l)
	}
	l := slog.New(slog.DiscardHandler)
	if got := registry.LoggerFromContext(registry.ContextWithLogger(context.Background(), l)); got != l {
		t.Errorf("LoggerFromContext = %p, want the logger set, %p", got, l)
	}
}
