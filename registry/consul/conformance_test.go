package consul_test

import (
	"testing"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

func TestConformance(t *testing.T) {
	registrytest.RunConformanceTests(t, registrytest.HarnessFunc(func(t *testing.T) registry.Registry {
		return newReg(t, shared.HTTPAddr())
	}))
}
