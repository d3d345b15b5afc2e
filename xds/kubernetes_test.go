package xds_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/rest"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	_ "github.com/wayfinder-rpc/wayfinder/registry/kubernetes" // kubernetes:// URLs
	"github.com/wayfinder-rpc/wayfinder/server"
)

// TestKubernetesThreeLanguages: against a real kube-apiserver, clients
// in Go, Python and Node reach every endpoint of a Service's
// EndpointSlices, as the EndpointSlice controller writes them for Pods;
// an instance registered through the Kubernetes backend (a slice of its
// own) reaches their picks, and leaves them when it is deregistered; so
// does a Pod that stops being ready.
//
// The API server refuses loopback addresses in EndpointSlices, so the
// endpoints are written at addresses in 10.244.0.0/16, as a cluster's
// Pod network would have them, and the xDS server reads the registry
// through podNetwork, which maps each to the loopback server the test
// started for it (clients in other languages dial the addresses the xDS
// server sends). Everything else is the real path: kube-apiserver over
// etcd, the Kubernetes backend's watches, Register and Deregister.
func TestKubernetesThreeLanguages(t *testing.T) {
	api := testenv.StartKubeAPIServer(t)
	t.Setenv("KUBECONFIG", api.Kubeconfig(t, testenv.KubeAdminToken))
	reg := openRegistry(t, "kubernetes://")
	pods := &podNetwork{Discovery: openRegistry(t, "kubernetes://"), to: map[string]string{}}

	cfg := &rest.Config{Host: api.URL, BearerToken: testenv.KubeAdminToken, TLSClientConfig: rest.TLSClientConfig{CAData: api.CAData}}
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	slices, err := discoveryv1client.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Each API call has a bound of its own: the test as a whole may take
	// minutes on a loaded machine.
	bounded := func() context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "hello"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 50051}}},
	}
	if _, err := core.Services("default").Create(bounded(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Service hello: %v", err)
	}
	// The Pods' servers, and their slice as the controller writes it.
	pods.add("10.244.0.1:50051", startPod(t, "a"))
	pods.add("10.244.0.2:50051", startPod(t, "b"))
	podSlice := func(bReady bool) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: "hello-pods", Labels: map[string]string{
				discoveryv1.LabelServiceName: "hello",
				discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
			}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(int32(50051))}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.244.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}},
				{Addresses: []string{"10.244.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(bReady), Serving: ptr(bReady), Terminating: ptr(!bReady)}},
			},
		}
	}
	created, err := slices.EndpointSlices("default").Create(bounded(), podSlice(true), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create EndpointSlice: %v", err)
	}

	srv, addr, _ := startXDS(t, pods, "127.0.0.1:0")
	clients := []*client{startClient(t, "go", addr), startPython(t, "python", addr), startNode(t, "node", addr)}
	for _, c := range clients {
		c.waitPicks(t, 0, "a", "b")
	}

	// An instance outside Pods, registered through the backend.
	port := testenv.FreePort(t)
	pods.add("10.244.0.3:50051", fmt.Sprintf("127.0.0.1:%d", port))
	marks := make([]int, len(clients))
	for i, c := range clients {
		marks[i] = c.calls()
	}
	c := startHello(t, reg, "c", server.WithListenAddress(fmt.Sprintf("127.0.0.1:%d", port)), server.WithAdvertiseAddress("10.244.0.3:50051"))
	for i, cl := range clients {
		cl.waitPicks(t, marks[i], "a", "b", "c")
	}
	if err := reg.Deregister(bounded(), c.Instance()); err != nil {
		t.Fatalf("Deregister(c) = %v", err)
	}
	for _, cl := range clients {
		cl.waitOnly(t, 300, "a", "b")
	}

	// Pod b stops being ready (the kubelet's readiness probe failed).
	s := podSlice(false)
	s.ResourceVersion = created.ResourceVersion
	if _, err := slices.EndpointSlices("default").Update(bounded(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update EndpointSlice: %v", err)
	}
	for _, cl := range clients {
		cl.waitOnly(t, 300, "a")
	}
	if got := srv.Stats().NACKs; got != 0 {
		t.Errorf("Stats().NACKs = %d, want 0", got)
	}
	if u := pods.unmapped(); len(u) > 0 {
		t.Errorf("the registry listed addresses outside the test's Pod network: %v", u)
	}
}

// startPod serves the HelloService as name on 127.0.0.1 until the test
// ends (after the test's clients) and returns its address. It registers
// nowhere: a Pod's endpoints are the EndpointSlice controller's.
func startPod(t *testing.T, name string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	hellopb.RegisterHelloServiceServer(g, &hello.Server{Name: name})
	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	t.Cleanup(func() {
		stopClients(t)
		g.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve(%s) = %v", name, err)
		}
	})
	return lis.Addr().String()
}

func ptr[T any](v T) *T { return &v }

// podNetwork is a registry.Discovery that reads another and maps the
// Pod-network addresses of its instances to the loopback servers a test
// started for them, as a cluster's network routes a Pod's address to
// it. An address the test did not add is left out, and listed by
// unmapped: a test dials nothing but loopback.
type podNetwork struct {
	registry.Discovery

	mu      sync.Mutex
	to      map[string]string   // Pod address -> loopback address
	missing map[string]struct{} // addresses listed but not in to
}

func (p *podNetwork) add(podAddr, loopback string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.to[podAddr] = loopback
}

func (p *podNetwork) unmapped() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for a := range p.missing {
		out = append(out, a)
	}
	return out
}

func (p *podNetwork) mapped(insts []registry.Instance) []registry.Instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]registry.Instance, 0, len(insts))
	for _, inst := range insts {
		to, ok := p.to[inst.Address]
		if !ok {
			if p.missing == nil {
				p.missing = map[string]struct{}{}
			}
			p.missing[inst.Address] = struct{}{}
			continue
		}
		inst.Address = to
		out = append(out, inst)
	}
	return out
}

func (p *podNetwork) Lookup(ctx context.Context, service string) ([]registry.Instance, error) {
	insts, err := p.Discovery.Lookup(ctx, service)
	if err != nil {
		return nil, err
	}
	return p.mapped(insts), nil
}

func (p *podNetwork) Watch(ctx context.Context, service string) (registry.Watcher, error) {
	w, err := p.Discovery.Watch(ctx, service)
	if err != nil {
		return nil, err
	}
	return podWatcher{w, p}, nil
}

type podWatcher struct {
	registry.Watcher
	p *podNetwork
}

func (w podWatcher) Next(ctx context.Context) ([]registry.Instance, error) {
	insts, err := w.Watcher.Next(ctx)
	if err != nil {
		return nil, err
	}
	return w.p.mapped(insts), nil
}
