package consul_test

import (
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
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

// Freeze freezes the proxy (registrytest.Freezer): the agent, as the
// suite's clients see it, accepts connections and never answers.
func (h harness) Freeze(*testing.T) func() {
	h.proxy.Freeze()
	return h.proxy.Thaw
}

// FrozenBound is the longest a call or a watch waits for a frozen agent
// with the defaults the harness uses: DefaultTimeout for calls,
// DefaultUnavailableAfter for a watch's blocking query.
func (harness) FrozenBound() time.Duration {
	return max(consul.DefaultTimeout, consul.DefaultUnavailableAfter)
}

// Addr is how errors name the agent the suite's clients use.
func (h harness) Addr() string { return "consul://" + h.proxy.Addr() }

var _ registrytest.Freezer = harness{}

func TestConformance(t *testing.T) {
	registrytest.RunConformanceTests(t, harness{registrytest.NewProxy(t, shared.HTTPAddr())}, registrytest.RequireOptional())
}
