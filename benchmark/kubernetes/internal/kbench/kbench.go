// Package kbench is the Kubernetes backend of Wayfinder's benchmark
// harness (package benchmark/internal/harness of the root module): a real
// kube-apiserver over a real etcd, on loopback, and the backend's
// Registry over it. It lives in a module of its own
// (benchmark/kubernetes), so that the harness's module never imports
// client-go and the backend's module carries no benchmark code; the
// command is benchmark/kubernetes/cmd/wfbench-k8s.
//
// The API server rejects loopback addresses in EndpointSlices, so every
// loopback address the scenarios register is written as an address in
// 10.244.0.0/16 with the same port, and the ClientConns the scenarios
// dial carry a dialer that maps each such address back to its loopback
// server and refuses every other: no packet leaves loopback.
//
// # Concurrency
//
// A Backend's methods, and the dialer, may be called concurrently.
package kbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/rest"

	"github.com/wayfinder-rpc/wayfinder/benchmark/internal/harness"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/kubernetes"
)

// Name is the backend's name in the report.
const Name = "kubernetes"

// New starts kube-apiserver (AlwaysAllow) over a fresh etcd on loopback
// for the life of tb and returns the harness's backend on it. Requests
// are counted at the client's HTTP transport: one per HTTP request to the
// API server (a list, a watch, a read or write), by verb and resource.
//
// The clients it opens have no client-side rate limit to speak of (QPS
// 5,000), so that the polling baseline's requests are not throttled
// before they reach the API server; the backend's own default is 100.
func New(tb testing.TB) *harness.Backend {
	tb.Helper()
	s := testenv.StartKubeAPIServer(tb)
	m := &addrMap{fake: map[string]string{}, real: map[string]string{}}
	w, err := newSetWriter(restConfig(s, nil), m)
	if err != nil {
		tb.Fatalf("kbench: %v", err)
	}
	return harness.NewBackend(harness.BackendConfig{
		Name:    Name,
		Version: version(testenv.Binary(tb, testenv.KubeAPIServerBinEnv, "kube-apiserver")),
		Open: func(_ testing.TB, c *harness.Counter) (registry.Registry, error) {
			r, err := kubernetes.New(kubernetes.WithRESTConfig(restConfig(s, c)))
			if err != nil {
				return nil, err
			}
			return &mapped{Registry: r, m: m}, nil
		},
		Stop:        func(testing.TB) { s.Stop() },
		Start:       func(tb testing.TB) { s.Start(tb) },
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(m.dial)},
		Sets:        w,
	})
}

func restConfig(s *testenv.KubeAPIServer, c *harness.Counter) *rest.Config {
	cfg := &rest.Config{
		Host:            s.URL,
		BearerToken:     testenv.KubeAdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: s.CAData},
		QPS:             5000,
		Burst:           10000,
	}
	if c != nil {
		cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt: rt, c: c} }
	}
	return cfg
}

// countingTransport counts each request by verb and resource, such as
// "WATCH endpointslices" or "GET services".
type countingTransport struct {
	rt http.RoundTripper
	c  *harness.Counter
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.c.Add(requestKind(req))
	return t.rt.RoundTrip(req)
}

func requestKind(req *http.Request) string {
	verb := req.Method
	if req.URL.Query().Get("watch") == "true" {
		verb = "WATCH"
	}
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	for i, p := range parts {
		if p == "namespaces" && i+2 < len(parts) {
			return verb + " " + parts[i+2]
		}
	}
	return verb + " " + req.URL.Path
}

// version returns the first line of `kube-apiserver --version`.
func version(bin string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	line = strings.TrimSpace(line)
	if strings.Contains(line, "v0.0.0") {
		// Built from the module proxy without the release's ldflags:
		// the version is in the cache directory's name, which the
		// Makefile keys by version.
		dir := filepath.Base(filepath.Dir(bin))
		if v, ok := strings.CutPrefix(dir, "kube-apiserver-"); ok {
			v, _, _ = strings.Cut(v, "-")
			return "kube-apiserver " + v
		}
	}
	return line
}

// addrMap maps loopback addresses to addresses in 10.244.0.0/16 that the
// API server accepts, one per loopback host:port, keeping the port, and
// back. mu guards the maps and next.
type addrMap struct {
	mu   sync.Mutex
	next int
	fake map[string]string // loopback host:port → 10.244.x.y:port
	real map[string]string // the reverse
}

// toFake returns the address to write for addr: its 10.244.x.y
// counterpart if addr is a loopback address, else addr.
func (m *addrMap) toFake(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return addr, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.fake[addr]; ok {
		return f, nil
	}
	if m.next >= 250*250 {
		return "", fmt.Errorf("kbench: more than %d loopback addresses", 250*250)
	}
	f := net.JoinHostPort(fmt.Sprintf("10.244.%d.%d", m.next/250, 1+m.next%250), port)
	m.next++
	m.fake[addr], m.real[f] = f, addr
	return f, nil
}

// dial is the ClientConns' dialer: it connects to the loopback server
// behind a mapped address and refuses any other address.
func (m *addrMap) dial(ctx context.Context, addr string) (net.Conn, error) {
	m.mu.Lock()
	real, ok := m.real[addr]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("kbench: refusing to dial %s: not an address the benchmark mapped to loopback", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", real)
}

// mapped is the backend's Registry with the addresses of registered
// instances mapped to 10.244.x.y. Discovery is the Registry's own: the
// resolver sees the addresses the API server holds.
type mapped struct {
	*kubernetes.Registry
	m *addrMap
}

func (r *mapped) mapInst(inst registry.Instance) (registry.Instance, error) {
	a, err := r.m.toFake(inst.Address)
	inst.Address = a
	return inst, err
}

func (r *mapped) Register(ctx context.Context, inst registry.Instance) error {
	inst, err := r.mapInst(inst)
	if err != nil {
		return err
	}
	return r.Registry.Register(ctx, inst)
}

func (r *mapped) Deregister(ctx context.Context, inst registry.Instance) error {
	inst, err := r.mapInst(inst)
	if err != nil {
		return err
	}
	return r.Registry.Deregister(ctx, inst)
}

// setWriter writes sets as the EndpointSlice controller writes slices:
// label kubernetes.io/service-name, managed by the controller, every
// endpoint ready, on a Service without a selector that it creates. It is
// the only writer of its slices, so a change is one request: an update
// at the resourceVersion it last wrote.
//
// mu guards services and rv.
type setWriter struct {
	core   corev1client.CoreV1Interface
	slices discoveryv1client.DiscoveryV1Interface
	m      *addrMap

	mu       sync.Mutex
	services map[string]bool   // created
	rv       map[string]string // slice name → the resourceVersion last written
}

func newSetWriter(cfg *rest.Config, m *addrMap) (*setWriter, error) {
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	sl, err := discoveryv1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &setWriter{core: core, slices: sl, m: m, services: map[string]bool{}, rv: map[string]string{}}, nil
}

const namespace = kubernetes.DefaultNamespace

// PutSet implements harness.SetWriter.
func (w *setWriter) PutSet(ctx context.Context, svc, name string, insts []registry.Instance) error {
	if len(insts) == 0 {
		return errors.New("kbench: empty set")
	}
	_, p, err := net.SplitHostPort(insts[0].Address)
	if err != nil {
		return err
	}
	var port int32
	if _, err := fmt.Sscan(p, &port); err != nil {
		return fmt.Errorf("kbench: port %q: %w", p, err)
	}
	w.mu.Lock()
	created := w.services[svc]
	w.mu.Unlock()
	if !created {
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: svc, Namespace: namespace},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: port}}},
		}
		if _, err := w.core.Services(namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("kbench: create Service %s: %w", svc, err)
		}
		w.mu.Lock()
		w.services[svc] = true
		w.mu.Unlock()
	}
	yes, pn := true, "grpc"
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc,
			discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pn, Port: &port}},
	}
	for _, in := range insts {
		f, err := w.m.toFake(in.Address)
		if err != nil {
			return err
		}
		host, fp, err := net.SplitHostPort(f)
		if err != nil {
			return err
		}
		if fp != p {
			return fmt.Errorf("kbench: set %s mixes ports %s and %s", name, p, fp)
		}
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: &yes, Serving: &yes}})
	}
	api := w.slices.EndpointSlices(namespace)
	w.mu.Lock()
	rv, ok := w.rv[name]
	w.mu.Unlock()
	var got *discoveryv1.EndpointSlice
	if ok {
		sl.ResourceVersion = rv
		got, err = api.Update(ctx, sl, metav1.UpdateOptions{})
	} else {
		got, err = api.Create(ctx, sl, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("kbench: write EndpointSlice %s: %w", name, err)
	}
	w.mu.Lock()
	w.rv[name] = got.ResourceVersion
	w.mu.Unlock()
	return nil
}
