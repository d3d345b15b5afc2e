package kubernetes_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	rbacv1client "k8s.io/client-go/kubernetes/typed/rbac/v1"
	"k8s.io/client-go/rest"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry/kubernetes"
)

// shared is one API server, under RBAC, for every test: each uses its
// own Services. The admin token is allowed everything; the nobody token
// nothing but what a test grants it.
var shared *testenv.KubeAPIServer

func TestMain(m *testing.M) {
	code := func() int {
		mt := &testenv.MainTB{}
		defer mt.Close()
		shared = testenv.StartKubeAPIServer(mt, testenv.WithKubeRBAC())
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// restConfig returns a client configuration for the shared server with
// token, at serverURL (the server's own if empty).
func restConfig(serverURL, token string) *rest.Config {
	if serverURL == "" {
		serverURL = shared.URL
	}
	return &rest.Config{
		Host:            serverURL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: shared.CAData},
	}
}

// newReg returns a Registry on the shared server, closed at the end of t.
func newReg(t testing.TB, token string, opts ...kubernetes.Option) *kubernetes.Registry {
	t.Helper()
	r, err := kubernetes.New(append([]kubernetes.Option{kubernetes.WithRESTConfig(restConfig("", token))}, opts...)...)
	if err != nil {
		t.Fatalf("kubernetes.New() = %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// admin is what the tests use to write Services and EndpointSlices, as
// the EndpointSlice controller would.
type admin struct {
	core   corev1client.CoreV1Interface
	slices discoveryv1client.DiscoveryV1Interface
	rbac   rbacv1client.RbacV1Interface
}

func newAdmin(t testing.TB) admin {
	t.Helper()
	cfg := restConfig("", testenv.KubeAdminToken)
	cfg.QPS, cfg.Burst = 200, 400
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sl, err := discoveryv1client.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := rbacv1client.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return admin{core, sl, rb}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// createService creates a Service without a selector in default with
// one port named "grpc", unless it exists.
func (a admin) createService(t testing.TB, name string) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 50051}}},
	}
	_, err := a.core.Services("default").Create(ctxT(t, 10*time.Second), svc, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create Service %s: %v", name, err)
	}
	// Gone with the test, its slices too: the API server lives as long as
	// the package, and a test run again (-count) must not find the last
	// run's slices or a Service the test changed.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sel := metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name}
		if err := a.slices.EndpointSlices("default").DeleteCollection(ctx, metav1.DeleteOptions{}, sel); err != nil {
			t.Errorf("delete the slices of %s: %v", name, err)
		}
		if err := a.core.Services("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete Service %s: %v", name, err)
		}
	})
}

// putSlice creates or replaces a slice of service, as the controller would.
func (a admin) putSlice(t testing.TB, service string, s *discoveryv1.EndpointSlice) {
	t.Helper()
	s.Namespace = "default"
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.Labels[discoveryv1.LabelServiceName] = service
	s.Labels[discoveryv1.LabelManagedBy] = "endpointslice-controller.k8s.io"
	api := a.slices.EndpointSlices("default")
	ctx := ctxT(t, 10*time.Second)
	cur, err := api.Get(ctx, s.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, s, metav1.CreateOptions{})
	case err == nil:
		s.ResourceVersion = cur.ResourceVersion
		_, err = api.Update(ctx, s, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("write EndpointSlice %s: %v", s.Name, err)
	}
}

func TestSmoke(t *testing.T) {
	a := newAdmin(t)
	a.createService(t, "smoke")
	r := newReg(t, testenv.KubeAdminToken)
	got, err := r.Lookup(ctxT(t, 10*time.Second), "smoke")
	if err != nil || len(got) != 0 {
		t.Fatalf("Lookup(smoke) = %v, %v; want empty, nil", got, err)
	}
}
