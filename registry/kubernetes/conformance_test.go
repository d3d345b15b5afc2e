package kubernetes_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/kubernetes"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// The conformance suite was written for registries that accept any
// service name and loopback addresses. Kubernetes accepts neither: a
// Service name is a DNS label, and the API server rejects loopback
// addresses in EndpointSlices. The harness therefore gives the suite a
// thin translation of the backend, and nothing else:
//
//   - each suite name maps to a valid Service name (a hash), and back;
//   - 127.a.b.c maps to 10.a.b.c and ::1 to fd00::1, and back (no packet
//     is ever sent to either: the suite never dials);
//   - each name is declared as a Service (no selector, port "grpc")
//     before the suite first uses it. On Kubernetes the Services are the
//     registry's set of services: what the suite calls a service with no
//     instances is a Service without endpoints. A name with no Service
//     is an error here, tested by TestUnknownService.
//
// Everything the suite checks then runs on the real backend against the
// real API server: Register writes managed EndpointSlices, Lookup and
// Watch read them.

var names sync.Map // suite name -> Service name, and Service name -> suite name

func kname(t testing.TB, a admin, service string) string {
	if registry.ValidateService(service) != nil {
		return service // let the backend reject it
	}
	if v, ok := names.Load(service); ok {
		return v.(string)
	}
	h := sha256.Sum256([]byte(service))
	k := "c" + hex.EncodeToString(h[:8])
	a.createService(t, k)
	names.Store(service, k)
	names.Store("k8s:"+k, service)
	return k
}

func suiteName(k string) string {
	if v, ok := names.Load("k8s:" + k); ok {
		return v.(string)
	}
	return k
}

func mapAddr(addr string, out bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return addr
	}
	switch {
	case out && ip.Is4() && ip.As4()[0] == 127:
		b := ip.As4()
		b[0] = 10
		return net.JoinHostPort(netip.AddrFrom4(b).String(), port)
	case !out && ip.Is4() && ip.As4()[0] == 10:
		b := ip.As4()
		b[0] = 127
		return net.JoinHostPort(netip.AddrFrom4(b).String(), port)
	case out && ip == netip.IPv6Loopback():
		return net.JoinHostPort("fd00::1", port)
	case !out && ip == netip.MustParseAddr("fd00::1"):
		return net.JoinHostPort("::1", port)
	}
	return addr
}

type translated struct {
	t     testing.TB
	a     admin
	inner *kubernetes.Registry
}

func (x translated) toK8s(inst registry.Instance) registry.Instance {
	inst = inst.Clone()
	inst.Service = kname(x.t, x.a, inst.Service)
	inst.Address = mapAddr(inst.Address, true)
	return inst
}

func fromK8s(insts []registry.Instance) []registry.Instance {
	for i := range insts {
		insts[i].Service = suiteName(insts[i].Service)
		insts[i].Address = mapAddr(insts[i].Address, false)
	}
	return insts
}

func (x translated) Register(ctx context.Context, inst registry.Instance) error {
	return x.inner.Register(ctx, x.toK8s(inst))
}

func (x translated) Deregister(ctx context.Context, inst registry.Instance) error {
	return x.inner.Deregister(ctx, x.toK8s(inst))
}

func (x translated) Lookup(ctx context.Context, service string) ([]registry.Instance, error) {
	got, err := x.inner.Lookup(ctx, kname(x.t, x.a, service))
	return fromK8s(got), err
}

func (x translated) Watch(ctx context.Context, service string) (registry.Watcher, error) {
	w, err := x.inner.Watch(ctx, kname(x.t, x.a, service))
	if err != nil {
		return nil, err
	}
	return translatedWatcher{w.(registry.IndexedWatcher)}, nil
}

// Services lists the backend's Services under the suite's names, sorted
// again after the translation.
func (x translated) Services(ctx context.Context) ([]string, error) {
	got, err := x.inner.Services(ctx)
	for i := range got {
		got[i] = suiteName(got[i])
	}
	slices.Sort(got)
	return got, err
}

func (x translated) Close() error { return x.inner.Close() }

type translatedWatcher struct{ registry.IndexedWatcher }

func (w translatedWatcher) Next(ctx context.Context) ([]registry.Instance, error) {
	got, err := w.IndexedWatcher.Next(ctx)
	return fromK8s(got), err
}

type harness struct {
	a     admin
	proxy *registrytest.Proxy
}

func (h harness) NewRegistry(t *testing.T) registry.Registry {
	r, err := kubernetes.New(kubernetes.WithRESTConfig(restConfig("https://"+h.proxy.Addr(), testenv.KubeAdminToken)))
	if err != nil {
		t.Fatalf("kubernetes.New() = %v", err)
	}
	return translated{t, h.a, r}
}

func (h harness) NewOutsideRegistry(t *testing.T) registry.Registry {
	r, err := kubernetes.New(kubernetes.WithRESTConfig(restConfig("", testenv.KubeAdminToken)))
	if err != nil {
		t.Fatalf("kubernetes.New() = %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return translated{t, h.a, r}
}

func (h harness) Outage(*testing.T) func() {
	h.proxy.Cut()
	return h.proxy.Restore
}

// Freeze freezes the proxy (registrytest.Freezer): the API server, as the
// suite's clients see it, accepts connections and never answers.
func (h harness) Freeze(*testing.T) func() {
	h.proxy.Freeze()
	return h.proxy.Thaw
}

// FrozenBound is the longest a call or a watch waits for a frozen API
// server with the defaults: DefaultTimeout for calls, twice that for a
// watch, plus the watchdog's tick (a twentieth of it).
func (harness) FrozenBound() time.Duration {
	return 2*kubernetes.DefaultTimeout + kubernetes.DefaultTimeout/10
}

// Addr is how errors name the API server the suite's clients use.
func (h harness) Addr() string { return "kubernetes://" + h.proxy.Addr() }

var _ registrytest.Freezer = harness{}

func TestConformance(t *testing.T) {
	addr := strings.TrimPrefix(shared.URL, "https://")
	h := harness{newAdmin(t), registrytest.NewProxy(t, addr)}
	registrytest.RunConformanceTests(t, h, registrytest.WithTimeout(60*time.Second), registrytest.RequireOptional())
}
