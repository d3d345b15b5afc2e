package kubernetes_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/rest"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry/kubernetes"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// compactable is an API server without a watch cache, so that its
// watches read etcd and a compaction of etcd makes an old
// resourceVersion "410 Gone", as in a cluster whose watch cache has
// moved on.
type compactable struct {
	srv    *testenv.KubeAPIServer
	etcd   *clientv3.Client
	proxy  *registrytest.Proxy
	admin  admin
	config func(server string) *rest.Config
}

func startCompactable(t *testing.T) compactable {
	m := testenv.StartEtcd(t)
	srv := testenv.StartKubeAPIServer(t, testenv.WithKubeEtcd(m), testenv.WithKubeFlags("--watch-cache=false"))
	cfg := func(server string) *rest.Config {
		if server == "" {
			server = srv.URL
		}
		return &rest.Config{Host: server, BearerToken: testenv.KubeAdminToken, TLSClientConfig: rest.TLSClientConfig{CAData: srv.CAData}}
	}
	core, err := corev1client.NewForConfig(cfg(""))
	if err != nil {
		t.Fatal(err)
	}
	sl, err := discoveryv1client.NewForConfig(cfg(""))
	if err != nil {
		t.Fatal(err)
	}
	return compactable{
		srv:    srv,
		etcd:   testenv.NewEtcdClient(t, nil, m.ClientAddr),
		proxy:  registrytest.NewProxy(t, strings.TrimPrefix(srv.URL, "https://")),
		admin:  admin{core: core, slices: sl},
		config: cfg,
	}
}

// compact writes n unrelated objects, then compacts etcd at its latest
// revision, so that every resourceVersion read before is gone.
func (c compactable) compact(t *testing.T, n int) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	for i := range n {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("churn-%d-%d", time.Now().UnixNano(), i)}}
		if _, err := c.admin.core.ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create ConfigMap: %v", err)
		}
	}
	resp, err := c.etcd.Get(ctx, "compaction-probe")
	if err != nil {
		t.Fatalf("etcd Get = %v", err)
	}
	if _, err := c.etcd.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("etcd Compact(%d) = %v", resp.Header.Revision, err)
	}
	t.Logf("compacted etcd at revision %d", resp.Header.Revision)
}

// TestCompactionWhileDisconnected: the client is cut off, the Service's
// slice changes and etcd is compacted past everything the client read;
// when the client is back it lists again and converges.
func TestCompactionWhileDisconnected(t *testing.T) {
	c := startCompactable(t)
	const svc = "compacted"
	c.admin.createService(t, svc)
	c.admin.putSlice(t, svc, slice("compacted-1", discoveryv1.AddressTypeIPv4, 50051, endpoint{addr: "10.244.11.1"}))
	r, err := kubernetes.New(kubernetes.WithRESTConfig(c.config("https://" + c.proxy.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := r.Watch(ctxT(t, 5*time.Second), svc)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	nextUntil(t, w, 30*time.Second, []string{"10.244.11.1:50051"}, nil)

	c.proxy.Cut()
	ctx := ctxT(t, 30*time.Second)
	if got, err := w.Next(ctx); err == nil {
		t.Fatalf("Next() during the cut = %v, nil; want the outage's error", addrs(got))
	}
	c.admin.putSlice(t, svc, slice("compacted-1", discoveryv1.AddressTypeIPv4, 50051, endpoint{addr: "10.244.11.1"}, endpoint{addr: "10.244.11.2"}))
	c.compact(t, 20)
	c.proxy.Restore()
	nextUntil(t, w, 60*time.Second, []string{"10.244.11.1:50051", "10.244.11.2:50051"}, nil)
}

// TestGoneRelists: a watch resumed from a resourceVersion that etcd has
// compacted away gets 410 Gone; the watcher lists again, keeps the set
// meanwhile, and follows changes afterwards.
func TestGoneRelists(t *testing.T) {
	var gone atomic.Int64
	defer kubernetes.SetTestHooks(2, func() { gone.Add(1) })()
	c := startCompactable(t)
	const svc = "gone"
	c.admin.createService(t, svc)
	c.admin.putSlice(t, svc, slice("gone-1", discoveryv1.AddressTypeIPv4, 50051, endpoint{addr: "10.244.12.1"}))
	r, err := kubernetes.New(kubernetes.WithRESTConfig(c.config("")))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := r.Watch(ctxT(t, 5*time.Second), svc)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	nextUntil(t, w, 30*time.Second, []string{"10.244.12.1:50051"}, nil)
	c.compact(t, 20)
	wait.For(t, 30*time.Second, "a 410 Gone after the compaction", func() bool { return gone.Load() > 0 })
	// Nothing changed: the re-list publishes nothing.
	nctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	got, err := w.Next(nctx)
	cancel()
	if err == nil {
		t.Fatalf("Next() after a re-list with no change = %v; want to block", addrs(got))
	}
	c.admin.putSlice(t, svc, slice("gone-1", discoveryv1.AddressTypeIPv4, 50051, endpoint{addr: "10.244.12.2"}))
	nextUntil(t, w, 30*time.Second, []string{"10.244.12.2:50051"}, nil)
	if _, err := r.Lookup(ctxT(t, 5*time.Second), svc); err != nil {
		t.Fatalf("Lookup = %v", err)
	}
}
