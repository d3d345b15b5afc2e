package multi_test

import (
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/registry/multi"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// etcdBound is the harness's etcd members' timeout and liveness bound.
const etcdBound = 2 * time.Second

// consulBound is the longest a call or a watch of the harness's Consul
// members waits for a frozen agent: their defaults.
var consulBound = max(consul.DefaultTimeout, consul.DefaultUnavailableAfter)

// testMux opens the harness's URLs: etcd members with the short bounds
// above, Consul members with their defaults, and multi, whose members
// it opens (which TestConformance thereby checks: with DefaultURLMux's
// etcd opener, the frozen cases would wait etcd's default bound).
func testMux() *registry.URLMux {
	m := new(registry.URLMux)
	m.RegisterScheme(etcd.Scheme, &etcd.URLOpener{Options: []etcd.Option{etcd.WithTimeout(etcdBound), etcd.WithUnavailableAfter(etcdBound)}})
	m.RegisterScheme(consul.Scheme, &consul.URLOpener{})
	m.RegisterScheme(multi.Scheme, &multi.URLOpener{})
	return m
}

// harness gives the suite multi registries reading and writing a real
// etcd and a real Consul agent, each through a proxy. Its outages cut
// one member, cut, and leave the other alone.
//
// Its freeze freezes both members: with one member frozen, a Register
// made during the freeze reaches the other, whose watch shows it, and
// the suite's frozen case rightly wants a single registry's watch to
// show no new set while frozen. TestOneMemberFrozen covers one frozen
// member.
type harness struct {
	mux                 *registry.URLMux
	etcdDirect, etcdVia string // host:port
	conDirect, conVia   string
	etcdProxy, conProxy *registrytest.Proxy
	cut                 *registrytest.Proxy
}

// refusing is a harness whose cut member, etcd, says "refused" when its
// proxy cuts it (registrytest.Refuser). Consul's client reads a cut
// proxy as a closed connection, not a refusal, as Consul's own suite
// knows (its harness is no Refuser).
type refusing struct{ harness }

func (h refusing) Refuse(*testing.T) func() {
	h.cut.Cut()
	return h.cut.Restore
}

var _ registrytest.Refuser = refusing{}

func multiURL(etcdAddr, consulAddr string) string {
	m := "etcd://" + etcdAddr + ",consul://" + consulAddr
	return "multi://?read=" + m + "&write=" + m
}

func (h harness) open(t *testing.T, raw string) registry.Registry {
	t.Helper()
	r, err := h.mux.Open(t.Context(), raw)
	if err != nil {
		t.Fatalf("Open(%q) = %v", raw, err)
	}
	return r
}

func (h harness) NewRegistry(t *testing.T) registry.Registry {
	return h.open(t, multiURL(h.etcdVia, h.conVia))
}

func (h harness) NewOutsideRegistry(t *testing.T) registry.Registry {
	return h.open(t, multiURL(h.etcdDirect, h.conDirect))
}

func (h harness) Outage(*testing.T) func() {
	h.cut.Cut()
	return h.cut.Restore
}

func (h harness) Freeze(*testing.T) func() {
	h.etcdProxy.Freeze()
	h.conProxy.Freeze()
	return func() {
		h.etcdProxy.Thaw()
		h.conProxy.Thaw()
	}
}

// FrozenBound is the longer of the members' bounds.
func (h harness) FrozenBound() time.Duration { return max(etcdBound, consulBound) }

// Addr names the member whose errors come first when both fail: etcd,
// listed first; a refusal, which only etcd's run makes, cuts etcd.
func (h harness) Addr() string { return "etcd://" + h.etcdVia }

// TestConformance runs the suite on multi over etcd and Consul, twice:
// with each member's outage in turn (the suite's outages, freezes and
// refusals cut that member alone, and the other keeps answering).
func TestConformance(t *testing.T) {
	e := testenv.StartEtcd(t)
	c := testenv.StartConsul(t)
	ep, cp := registrytest.NewProxy(t, e.Endpoint()), registrytest.NewProxy(t, c.HTTPAddr())
	base := harness{mux: testMux(), etcdDirect: e.Endpoint(), etcdVia: ep.Addr(), conDirect: c.HTTPAddr(), conVia: cp.Addr(), etcdProxy: ep, conProxy: cp}
	t.Run("EtcdOutages", func(t *testing.T) {
		h := base
		h.cut = ep
		registrytest.RunConformanceTests(t, refusing{h}, registrytest.RequireOptional())
	})
	t.Run("ConsulOutages", func(t *testing.T) {
		h := base
		h.cut = cp
		registrytest.RunConformanceTests(t, h, registrytest.RequireOptional())
	})
}
