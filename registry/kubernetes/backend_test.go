package kubernetes_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	_ "github.com/wayfinder-rpc/wayfinder/balancer/zone"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/kubernetes"
	"github.com/wayfinder-rpc/wayfinder/resolver"
	"github.com/wayfinder-rpc/wayfinder/server"
)

func ptr[T any](v T) *T { return &v }

// endpoint is one endpoint of a test slice.
type endpoint struct {
	addr                        string
	ready, serving, terminating *bool
	zone                        string
}

func slice(name string, typ discoveryv1.AddressType, port int32, eps ...endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name},
		AddressType: typ,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(port)}},
		Endpoints:   []discoveryv1.Endpoint{},
	}
	for _, e := range eps {
		x := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating}}
		if e.zone != "" {
			x.Zone = ptr(e.zone)
		}
		s.Endpoints = append(s.Endpoints, x)
	}
	return s
}

func addrs(in []registry.Instance) []string {
	out := []string{}
	for _, i := range in {
		out = append(out, i.Address)
	}
	slices.Sort(out)
	return out
}

// nextUntil calls Next until the addresses are want, failing after d.
// check, if set, is called on every set Next returns.
func nextUntil(t *testing.T, w registry.Watcher, d time.Duration, want []string, check func([]registry.Instance)) {
	t.Helper()
	slices.Sort(want)
	ctx := ctxT(t, d)
	var last []string
	for {
		got, err := w.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("Next() never returned %v within %v; last = %v", want, d, last)
			}
			t.Logf("Next() = %v (transient)", err)
			continue
		}
		if check != nil {
			check(got)
		}
		last = addrs(got)
		if slices.Equal(last, want) {
			return
		}
	}
}

// TestThreeSlicesUnion: a Service with three slices, each updated in
// turn; every set the watch returns holds the endpoints of the two
// slices that did not change, so one slice's update never drops the
// others'.
func TestThreeSlicesUnion(t *testing.T) {
	a := newAdmin(t)
	const svc = "three"
	a.createService(t, svc)
	content := map[string][]string{
		"three-a": {"10.244.1.1", "10.244.1.2"},
		"three-b": {"10.244.2.1", "10.244.2.2"},
		"three-c": {"10.244.3.1", "10.244.3.2"},
	}
	put := func(name string) {
		var eps []endpoint
		for _, ad := range content[name] {
			eps = append(eps, endpoint{addr: ad})
		}
		a.putSlice(t, svc, slice(name, discoveryv1.AddressTypeIPv4, 50051, eps...))
	}
	union := func(except string) []string {
		var out []string
		for name, ads := range content {
			if name == except {
				continue
			}
			for _, ad := range ads {
				out = append(out, ad+":50051")
			}
		}
		return out
	}
	for name := range content {
		put(name)
	}
	r := newReg(t, testenv.KubeAdminToken)
	w, err := r.Watch(ctxT(t, 5*time.Second), svc)
	if err != nil {
		t.Fatalf("Watch(%q) = %v", svc, err)
	}
	defer w.Close()
	nextUntil(t, w, 30*time.Second, union(""), nil)
	for round := range 2 {
		for _, name := range []string{"three-a", "three-b", "three-c"} {
			keep := union(name)
			content[name] = []string{fmt.Sprintf("10.244.%d.%d", 10+round, len(name)+int(name[len(name)-1])), content[name][0]}
			put(name)
			nextUntil(t, w, 30*time.Second, union(""), func(got []registry.Instance) {
				have := addrs(got)
				for _, k := range keep {
					if !slices.Contains(have, k) {
						t.Fatalf("after updating %s, Next() = %v: lost %s of another slice", name, have, k)
					}
				}
			})
		}
	}
	got, err := r.Lookup(ctxT(t, 5*time.Second), svc)
	if err != nil || !slices.Equal(addrs(got), sortedCopy(union(""))) {
		t.Fatalf("Lookup(%q) = %v, %v; want %v", svc, addrs(got), err, union(""))
	}
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestConditions: each condition, on a real API server, through a watch.
func TestConditions(t *testing.T) {
	a := newAdmin(t)
	const svc = "conditions"
	a.createService(t, svc)
	T, F := ptr(true), ptr(false)
	r := newReg(t, testenv.KubeAdminToken)
	w, err := r.Watch(ctxT(t, 5*time.Second), svc)
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	defer w.Close()
	nextUntil(t, w, 30*time.Second, []string{}, nil)
	steps := []struct {
		what string
		eps  []endpoint
		want []string
	}{
		{"ready used; serving+terminating and not serving excluded", []endpoint{
			{addr: "10.244.5.1", ready: T, serving: T, terminating: F},
			{addr: "10.244.5.2", ready: F, serving: T, terminating: T},
			{addr: "10.244.5.3", ready: F, serving: F, terminating: F},
			{addr: "10.244.5.4"}, // no conditions: ready
		}, []string{"10.244.5.1:50051", "10.244.5.4:50051"}},
		{"nothing ready: serving+terminating as a last resort", []endpoint{
			{addr: "10.244.5.1", ready: F, serving: F, terminating: T},
			{addr: "10.244.5.2", ready: F, serving: T, terminating: T},
			{addr: "10.244.5.3", ready: F, serving: F, terminating: F},
		}, []string{"10.244.5.2:50051"}},
		{"nothing serving: the empty set", []endpoint{
			{addr: "10.244.5.1", ready: F, serving: F, terminating: T},
			{addr: "10.244.5.3", ready: F, serving: F, terminating: F},
		}, []string{}},
		{"ready again", []endpoint{
			{addr: "10.244.5.3", ready: T},
		}, []string{"10.244.5.3:50051"}},
	}
	for _, st := range steps {
		a.putSlice(t, svc, slice("conditions-1", discoveryv1.AddressTypeIPv4, 50051, st.eps...))
		nextUntil(t, w, 30*time.Second, st.want, nil)
		got, err := r.Lookup(ctxT(t, 5*time.Second), svc)
		if err != nil || !slices.Equal(addrs(got), sortedCopy(st.want)) {
			t.Fatalf("%s: Lookup = %v, %v; want %v", st.what, addrs(got), err, st.want)
		}
	}
}

// TestIPv6AndZones: IPv4 and IPv6 slices of one Service, zones on
// the instances.
func TestIPv6AndZones(t *testing.T) {
	a := newAdmin(t)
	const svc = "dualstack"
	a.createService(t, svc)
	a.putSlice(t, svc, slice("dualstack-v4", discoveryv1.AddressTypeIPv4, 50051, endpoint{addr: "10.244.6.1", zone: "zone-a"}))
	a.putSlice(t, svc, slice("dualstack-v6", discoveryv1.AddressTypeIPv6, 50051, endpoint{addr: "fd00:10:244::6", zone: "zone-b"}))
	r := newReg(t, testenv.KubeAdminToken)
	var got []registry.Instance
	var err error
	ctx := ctxT(t, 30*time.Second)
	wait.Until(30*time.Second, func() bool {
		got, err = r.Lookup(ctx, svc)
		return err == nil && len(got) == 2
	})
	want := map[string]string{"10.244.6.1:50051": "zone-a", "[fd00:10:244::6]:50051": "zone-b"}
	if len(got) != 2 {
		t.Fatalf("Lookup(%q) = %v, %v; want 2 instances", svc, addrs(got), err)
	}
	for _, i := range got {
		if want[i.Address] != i.Zone {
			t.Errorf("instance %s: Zone = %q, want %q", i.Address, i.Zone, want[i.Address])
		}
	}
}

// TestUnknownService: a name with no Service is an error, never an
// empty set, from Lookup and from Watch.
func TestUnknownService(t *testing.T) {
	r := newReg(t, testenv.KubeAdminToken)
	_, err := r.Lookup(ctxT(t, 5*time.Second), "nosuch")
	if !errors.Is(err, kubernetes.ErrServiceNotFound) || !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Lookup(nosuch) = %v; want ErrServiceNotFound and ErrUnavailable", err)
	}
	w, err := r.Watch(ctxT(t, 5*time.Second), "nosuch.default")
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	defer w.Close()
	got, err := w.Next(ctxT(t, 10*time.Second))
	if !errors.Is(err, kubernetes.ErrServiceNotFound) || got != nil {
		t.Fatalf("first Next() of a missing Service = %v, %v; want ErrServiceNotFound and no set", got, err)
	}
	t.Logf("the error: %v", err)
}

// TestRBACDenied: a token that may read Services but not list or watch
// EndpointSlices gets registry.ErrPermissionDenied, from Lookup and
// Watch, never an empty set; one that may do nothing is denied on the
// Service.
func TestRBACDenied(t *testing.T) {
	a := newAdmin(t)
	const svc = "rbac"
	a.createService(t, svc)
	a.putSlice(t, svc, slice("rbac-1", discoveryv1.AddressTypeIPv4, 50051, endpoint{addr: "10.244.7.1"}))
	r := newReg(t, testenv.KubeNobodyToken)
	if _, err := r.Lookup(ctxT(t, 5*time.Second), svc); !errors.Is(err, registry.ErrPermissionDenied) {
		t.Fatalf("Lookup(%q) with no permission = %v; want registry.ErrPermissionDenied", svc, err)
	}
	ctx := ctxT(t, 10*time.Second)
	_, err := a.rbac.Roles("default").Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "services-only"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = a.rbac.Roles("default").Delete(context.Background(), "services-only", metav1.DeleteOptions{})
	})
	_, err = a.rbac.RoleBindings("default").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "services-only"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "services-only"},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "wayfinder-nobody"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = a.rbac.RoleBindings("default").Delete(context.Background(), "services-only", metav1.DeleteOptions{})
	})
	// RBAC changes reach the authorizer through its informers.
	var lerr error
	wait.Until(10*time.Second, func() bool {
		_, lerr = r.Lookup(ctx, svc)
		return errors.Is(lerr, registry.ErrPermissionDenied) && strings.Contains(lerr.Error(), "endpointslices")
	})
	if !errors.Is(lerr, registry.ErrPermissionDenied) || !errors.Is(lerr, registry.ErrUnavailable) || !strings.Contains(lerr.Error(), "endpointslices") {
		t.Fatalf("Lookup(%q) without list on endpointslices = %v; want registry.ErrPermissionDenied naming endpointslices", svc, lerr)
	}
	t.Logf("the error: %v", lerr)
	w, err := r.Watch(ctxT(t, 5*time.Second), svc)
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	defer w.Close()
	got, err := w.Next(ctxT(t, 10*time.Second))
	if !errors.Is(err, registry.ErrPermissionDenied) || got != nil {
		t.Fatalf("first Next() without permission = %v, %v; want registry.ErrPermissionDenied and no set", got, err)
	}
}

// TestRegisterCreatesService: Register for a name with no Service
// creates one without a selector, and writes a managed slice that
// other clients read, IPv6 included.
func TestRegisterCreatesService(t *testing.T) {
	r := newReg(t, testenv.KubeAdminToken)
	inst := registry.Instance{ID: "vm-1", Service: "vms", Address: "[fd00:10:244::9]:7000", Zone: "zone-c", Version: "v3", Weight: 4}
	if err := r.Register(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Register(%v) = %v", inst, err)
	}
	a := newAdmin(t)
	svc, err := a.core.Services("default").Get(ctxT(t, 5*time.Second), "vms", metav1.GetOptions{})
	if err != nil || len(svc.Spec.Selector) != 0 || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != kubernetes.DefaultPortName {
		t.Fatalf("Service vms after Register = %+v, %v; want one without a selector, with port %q", svc, err, kubernetes.DefaultPortName)
	}
	got, err := newReg(t, testenv.KubeAdminToken).Lookup(ctxT(t, 5*time.Second), "vms")
	if err != nil || len(got) != 1 || !got[0].Equal(inst) {
		t.Fatalf("Lookup(vms) = %+v, %v; want %+v", got, err, inst)
	}
	if err := r.Deregister(ctxT(t, 5*time.Second), inst); err != nil {
		t.Fatalf("Deregister = %v", err)
	}
	if got, err := r.Lookup(ctxT(t, 5*time.Second), "vms"); err != nil || len(got) != 0 {
		t.Fatalf("Lookup(vms) after Deregister = %v, %v; want empty", got, err)
	}
}

// TestURLsAndKubeconfig: the URL form, and a registry opened from a URL
// with its configuration from KUBECONFIG, as outside a cluster.
func TestURLsAndKubeconfig(t *testing.T) {
	t.Setenv("KUBECONFIG", shared.Kubeconfig(t, testenv.KubeAdminToken))
	for _, raw := range []string{"kubernetes://", "kubernetes:///", "kubernetes://?namespace=prod&port=grpc", "kubernetes://?port=50051&timeout=2s&context=test", "kubernetes://?ttl=10s"} {
		if err := registry.ValidateURL(raw); err != nil {
			t.Errorf("ValidateURL(%q) = %v, want nil", raw, err)
		}
	}
	for raw, want := range map[string]string{
		"kubernetes://10.0.0.1:6443":       "host",
		"kubernetes://?prt=grpc":           "known parameters: context, namespace, port, timeout, ttl",
		"kubernetes://?ttl=500ms":          "ttl",
		"kubernetes://?port=Bad_Name":      "port",
		"kubernetes://?port=70000":         "port",
		"kubernetes://?namespace=Prod":     "namespace",
		"kubernetes://?timeout=-1s":        "timeout",
		"kubernetes://?port=a&port=b":      "given 2 times",
		"kubernetes://user:pw@/?port=grpc": "credentials",
	} {
		if err := registry.ValidateURL(raw); !errors.Is(err, registry.ErrInvalidURL) || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateURL(%q) = %v; want ErrInvalidURL mentioning %q", raw, err, want)
		}
	}
	a := newAdmin(t)
	a.createService(t, "fromurl")
	a.putSlice(t, "fromurl", slice("fromurl-1", discoveryv1.AddressTypeIPv4, 50051, endpoint{addr: "10.244.8.1"}))
	r, err := registry.Open(context.Background(), "kubernetes://?port=grpc")
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	defer r.Close()
	ctx := ctxT(t, 30*time.Second)
	var got []registry.Instance
	wait.Until(30*time.Second, func() bool {
		got, err = r.Lookup(ctx, "fromurl")
		return err == nil && len(got) == 1
	})
	if len(got) != 1 || got[0].Address != "10.244.8.1:50051" {
		t.Fatalf("Lookup(fromurl) = %v, %v; want 10.244.8.1:50051", addrs(got), err)
	}
	if _, err := r.Lookup(ctx, "Not_A_Service"); !errors.Is(err, registry.ErrInvalidService) {
		t.Fatalf("Lookup(Not_A_Service) = %v, want ErrInvalidService", err)
	}
}

// newCache returns a resolver cache that stops its watches as soon as
// their last ClientConn closes, closed at the end of t.
func newCache(t *testing.T) *resolver.Cache {
	c := resolver.NewCache(resolver.WithLinger(0))
	t.Cleanup(func() { c.Close() })
	return c
}

// loopbackDialer maps the slice addresses of a test to real loopback
// servers. It refuses any other address, so that no packet ever goes
// to 10.244.x.y, and counts the dials.
type loopbackDialer struct {
	t     *testing.T
	mu    sync.Mutex
	to    map[string]string
	dials atomic.Int64
}

func (d *loopbackDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	d.mu.Lock()
	real, ok := d.to[addr]
	d.mu.Unlock()
	if !ok {
		d.t.Errorf("dial %s: not a test address; refusing to send a packet there", addr)
		return nil, fmt.Errorf("test dialer: %s is not mapped", addr)
	}
	d.dials.Add(1)
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", real)
}

// TestZoneAwareFromSlices: the zone-aware policy, fed by slice zones
// through the resolver, keeps calls in the local zone, and spills to
// the other when the local endpoint leaves its slice.
func TestZoneAwareFromSlices(t *testing.T) {
	a := newAdmin(t)
	const svc = "zoned"
	a.createService(t, svc)
	local, remote := testenv.StartHello(t, "local"), testenv.StartHello(t, "remote")
	d := &loopbackDialer{t: t, to: map[string]string{"10.244.9.1:50051": local.Addr, "10.244.9.2:50051": remote.Addr}}
	a.putSlice(t, svc, slice("zoned-a", discoveryv1.AddressTypeIPv4, 50051, endpoint{addr: "10.244.9.1", zone: "zone-a"}))
	a.putSlice(t, svc, slice("zoned-b", discoveryv1.AddressTypeIPv4, 50051, endpoint{addr: "10.244.9.2", zone: "zone-b"}))
	r := newReg(t, testenv.KubeAdminToken)
	cc, err := grpc.NewClient("wayfinder:///"+svc,
		grpc.WithResolvers(resolver.NewBuilder(r, resolver.WithCache(newCache(t)))),
		grpc.WithContextDialer(d.dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_zone_aware":{"localZone":"zone-a"}}]}`),
	)
	if err != nil {
		t.Fatalf("NewClient = %v", err)
	}
	defer cc.Close()
	client := hellopb.NewHelloServiceClient(cc)
	from := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := client.SayHello(ctx, &hellopb.HelloRequest{Name: "k8s"}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatalf("SayHello = %v", err)
		}
		_, name, _ := strings.Cut(resp.GetMessage(), "from ")
		return name
	}
	// While the local connection is still being made, calls may spill
	// over; once it is ready, every call stays local.
	deadline := time.Now().Add(30 * time.Second)
	for from() != "local" {
		if time.Now().After(deadline) {
			t.Fatalf("calls never reached the local zone's server")
		}
	}
	for i := range 20 {
		if got := from(); got != "local" {
			t.Fatalf("call %d went to %q, want the local zone's server", i, got)
		}
	}
	// The local endpoint terminates and leaves: calls spill to zone-b.
	a.putSlice(t, svc, slice("zoned-a", discoveryv1.AddressTypeIPv4, 50051, endpoint{addr: "10.244.9.1", zone: "zone-a", ready: ptr(false), serving: ptr(false), terminating: ptr(true)}))
	deadline = time.Now().Add(30 * time.Second)
	for from() != "remote" {
		if time.Now().After(deadline) {
			t.Fatalf("calls never moved to zone-b after the local endpoint stopped serving")
		}
	}
	if d.dials.Load() == 0 {
		t.Fatalf("no dial went through the test dialer")
	}
}

// TestAPIServerRestart: the API server restarts under a running client:
// no RPC fails (the resolver keeps the last set), and a change made
// after the restart reaches the client.
func TestAPIServerRestart(t *testing.T) {
	a := newAdmin(t)
	const svc = "restart"
	a.createService(t, svc)
	s1, s2 := testenv.StartHello(t, "s1"), testenv.StartHello(t, "s2")
	d := &loopbackDialer{t: t, to: map[string]string{"10.244.10.1:50051": s1.Addr, "10.244.10.2:50051": s2.Addr}}
	a.putSlice(t, svc, slice("restart-1", discoveryv1.AddressTypeIPv4, 50051, endpoint{addr: "10.244.10.1"}))
	r := newReg(t, testenv.KubeAdminToken)
	cc, err := grpc.NewClient("wayfinder:///"+svc,
		grpc.WithResolvers(resolver.NewBuilder(r, resolver.WithCache(newCache(t)))),
		grpc.WithContextDialer(d.dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
	)
	if err != nil {
		t.Fatalf("NewClient = %v", err)
	}
	defer cc.Close()
	client := hellopb.NewHelloServiceClient(cc)
	call := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := client.SayHello(ctx, &hellopb.HelloRequest{Name: "k8s"}, grpc.WaitForReady(true))
		if err != nil {
			return "", err
		}
		_, name, _ := strings.Cut(resp.GetMessage(), "from ")
		return name, nil
	}
	if _, err := call(); err != nil {
		t.Fatalf("SayHello = %v", err)
	}
	var failed, calls atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			calls.Add(1)
			if _, err := call(); err != nil {
				failed.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	shared.Restart(t)
	a.putSlice(t, svc, slice("restart-1", discoveryv1.AddressTypeIPv4, 50051, endpoint{addr: "10.244.10.1"}, endpoint{addr: "10.244.10.2"}))
	wait.For(t, 60*time.Second, "the client to reach s2, added after the API server restarted", func() bool {
		name, err := call()
		return err == nil && name == "s2"
	})
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d RPCs failed across the API server restart, want 0", n, calls.Load())
	}
	t.Logf("%d RPCs across the restart, none failed", calls.Load())
}

// TestRegisterInAPod: an instance whose address Kubernetes already lists
// (a Pod) is not written again by Register, and is one instance, the
// Pod's, with the Pod's conditions; Deregister leaves it alone.
func TestRegisterInAPod(t *testing.T) {
	a := newAdmin(t)
	const svc = "inpod"
	a.createService(t, svc)
	a.putSlice(t, svc, slice("inpod-1", discoveryv1.AddressTypeIPv4, 50051, endpoint{addr: "10.244.14.1"}))
	r := newReg(t, testenv.KubeAdminToken, kubernetes.WithPodCheck(true)) // as in a cluster
	pod := registry.Instance{ID: "pod-1", Service: svc, Address: "10.244.14.1:50051", Version: "v1"}
	if err := r.Register(ctxT(t, 10*time.Second), pod); err != nil {
		t.Fatalf("Register(%v) = %v", pod, err)
	}
	l, err := a.slices.EndpointSlices("default").List(ctxT(t, 5*time.Second), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil || len(l.Items) != 1 {
		t.Fatalf("slices of %s after Register in a Pod = %d, %v; want only the controller's", svc, len(l.Items), err)
	}
	// Other clients see the Pod's endpoint under its address; the
	// registrant, under the ID it registered, so that its drain can
	// wait for that ID to leave.
	got, err := newReg(t, testenv.KubeAdminToken).Lookup(ctxT(t, 5*time.Second), svc)
	if err != nil || len(got) != 1 || got[0].ID != "10.244.14.1:50051" {
		t.Fatalf("Lookup(%q) = %+v, %v; want the Pod's endpoint once", svc, got, err)
	}
	got, err = r.Lookup(ctxT(t, 5*time.Second), svc)
	if err != nil || len(got) != 1 || got[0].ID != "pod-1" || got[0].Address != "10.244.14.1:50051" {
		t.Fatalf("the registrant's Lookup(%q) = %+v, %v; want the Pod's endpoint once, as pod-1", svc, got, err)
	}
	if err := r.Deregister(ctxT(t, 5*time.Second), pod); err != nil {
		t.Fatalf("Deregister = %v", err)
	}
	if got, err := r.Lookup(ctxT(t, 5*time.Second), svc); err != nil || len(got) != 1 {
		t.Fatalf("Lookup(%q) after Deregister = %v, %v; want the Pod's endpoint, which Kubernetes manages", svc, addrs(got), err)
	}
}

// TestLiveness: a registrant renews its registration while it runs;
// once it stops (Close without Deregister, as a crash would), its
// endpoint leaves every reader's view about a TTL later.
func TestLiveness(t *testing.T) {
	const ttl = 2 * time.Second
	a, err := kubernetes.New(kubernetes.WithRESTConfig(restConfig("", testenv.KubeAdminToken)), kubernetes.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	inst := registry.Instance{ID: "vm-live", Service: "liveness", Address: "10.244.15.1:7000"}
	if err := a.Register(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Register = %v", err)
	}
	r := newReg(t, testenv.KubeAdminToken)
	w, err := r.Watch(ctxT(t, 5*time.Second), "liveness")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	nextUntil(t, w, 30*time.Second, []string{"10.244.15.1:7000"}, nil)
	// Renewed: still there after three TTLs, and no update meanwhile.
	ctx, cancel := context.WithTimeout(t.Context(), 3*ttl)
	got, err := w.Next(ctx)
	cancel()
	if err == nil {
		t.Fatalf("Next() while the registrant renews = %v; want no change", addrs(got))
	}
	if got, err := r.Lookup(ctxT(t, 5*time.Second), "liveness"); err != nil || len(got) != 1 {
		t.Fatalf("Lookup after 3 TTLs of renewals = %v, %v; want the instance", addrs(got), err)
	}
	start := time.Now()
	a.Close() // stops renewing, deregisters nothing
	nextUntil(t, w, 4*ttl, []string{}, nil)
	if d := time.Since(start); d < ttl/2 {
		t.Fatalf("the endpoint left %v after its registrant stopped, before its TTL could pass", d)
	}
	t.Logf("the endpoint left %v after its registrant stopped (TTL %v)", time.Since(start).Round(10*time.Millisecond), ttl)
}

// TestDrainInAPod: a server.Server in a Pod keeps its drain order.
// Register writes nothing (the Pod is the controller's endpoint), and
// Stop, after NOT_SERVING, waits until the Pod's endpoint has left the
// server's own watch view (here: the test marks it terminating, as the
// controller would once the readiness probe fails) before GracefulStop.
func TestDrainInAPod(t *testing.T) {
	a := newAdmin(t)
	const svc = "drain"
	a.createService(t, svc)
	a.putSlice(t, svc, slice("drain-1", discoveryv1.AddressTypeIPv4, 50051,
		endpoint{addr: "10.244.16.1"}, endpoint{addr: "10.244.16.2"}))
	r := newReg(t, testenv.KubeAdminToken, kubernetes.WithPodCheck(true)) // as in a cluster
	s, err := server.New(r, svc, server.WithID("pod-1"), server.WithListenAddress("127.0.0.1:0"),
		server.WithAdvertiseAddress("10.244.16.1:50051"), server.WithDrainTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Start = %v", err)
	}
	l, err := a.slices.EndpointSlices("default").List(ctxT(t, 5*time.Second), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil || len(l.Items) != 1 {
		t.Fatalf("slices of %s after Start in a Pod = %d, %v; want only the controller's", svc, len(l.Items), err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		t.Fatalf("Stop() = %v before the Pod's endpoint left the view; want it to wait", err)
	case <-time.After(2 * time.Second):
	}
	a.putSlice(t, svc, slice("drain-1", discoveryv1.AddressTypeIPv4, 50051,
		endpoint{addr: "10.244.16.1", ready: ptr(false), serving: ptr(false), terminating: ptr(true)}, endpoint{addr: "10.244.16.2"}))
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Stop() = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("Stop() still waiting 20s after the Pod's endpoint left the view")
	}
}

// TestServicePortRenamed: the Service's port changes name, and the
// controller rewrites its slices one at a time with the new name; no
// endpoint ever leaves the set, neither those of the rewritten slices
// nor those of the slices still under the old name.
func TestServicePortRenamed(t *testing.T) {
	a := newAdmin(t)
	const svc = "renamed"
	a.createService(t, svc)
	names := []string{"renamed-a", "renamed-b", "renamed-c"}
	put := func(i int, port string) {
		s := slice(names[i], discoveryv1.AddressTypeIPv4, 50051, endpoint{addr: fmt.Sprintf("10.244.7.%d", i+1)})
		s.Ports[0].Name = ptr(port)
		a.putSlice(t, svc, s)
	}
	for i := range names {
		put(i, "grpc")
	}
	all := []string{"10.244.7.1:50051", "10.244.7.2:50051", "10.244.7.3:50051"}
	r := newReg(t, testenv.KubeAdminToken)
	w, err := r.Watch(ctxT(t, 5*time.Second), svc)
	if err != nil {
		t.Fatalf("Watch(%q) = %v", svc, err)
	}
	defer w.Close()
	nextUntil(t, w, 30*time.Second, all, nil)

	cur, err := a.core.Services("default").Get(ctxT(t, 10*time.Second), svc, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.Ports[0].Name = "rpc"
	if _, err := a.core.Services("default").Update(ctxT(t, 10*time.Second), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range names {
		put(i, "rpc")
		// A marker slice written after each rewrite: once the watch has
		// it, it has seen the rewrite too, and every set on the way
		// must have held all three endpoints.
		marker := fmt.Sprintf("10.244.8.%d", i+1)
		m := slice("renamed-marker", discoveryv1.AddressTypeIPv4, 50051, endpoint{addr: marker})
		m.Ports[0].Name = ptr("rpc")
		a.putSlice(t, svc, m)
		nextUntil(t, w, 30*time.Second, append(slices.Clone(all), marker+":50051"), func(got []registry.Instance) {
			have := addrs(got)
			for _, want := range all {
				if !slices.Contains(have, want) {
					t.Fatalf("after renaming the port and rewriting %s, Next() = %v: lost %s", names[i], have, want)
				}
			}
		})
	}
	got, err := r.Lookup(ctxT(t, 5*time.Second), svc)
	if err != nil || len(got) != 4 {
		t.Fatalf("Lookup(%q) after the rename = %v, %v; want all three and the marker", svc, addrs(got), err)
	}
}
