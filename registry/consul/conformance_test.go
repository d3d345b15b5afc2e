package consul_test

import (
	"testing"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// harness gives the suite clients of the shared agent through a proxy,
// whose cut is the outage: a partition from a real agent, which keeps
// its catalog and checks as they were.
type harness struct{ proxy *registrytest.Proxy }

func (h harness) NewRegistry(t *testing.T) registry.Registry { return newReg(t, h.proxy.Addr()) }

func (h harness) NewOutsideRegistry(t *testing.T) registry.Registry {
	return newReg(t, shared.HTTPAddr())
}

func (h harness) Outage(*testing.T) func() {
	h.proxy.Cut()
	return h.proxy.Restore
}

// Stall freezes the shared agent with SIGSTOP (registrytest.Staller).
func (h harness) Stall(t *testing.T) func() {
	shared.Pause(t)
	return func() { shared.Resume(t) }
}

func TestConformance(t *testing.T) {
	registrytest.RunConformanceTests(t, harness{registrytest.NewProxy(t, shared.HTTPAddr())})
}
