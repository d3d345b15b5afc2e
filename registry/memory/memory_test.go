package memory_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	store := memory.NewStore()
	registrytest.RunConformanceTests(t, registrytest.HarnessFunc(func(*testing.T) registry.Registry {
		return store.Open()
	}))
}
