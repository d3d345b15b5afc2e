package kubernetes_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/faults"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry/kubernetes"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// The Kubernetes variant of the history-checking fault suite
// (internal/testing/faults): five ClientConns (three with their own
// registry client and cache, two sharing one) follow a Service whose
// endpoints are spread over three EndpointSlices, written one change at
// a time as the EndpointSlice controller would, while the API server is
// cut off and restarted. Every ClientConn's history must be a
// subsequence of the truth, never go back, never repeat a set with
// nothing changed, never show an error as an empty set, and converge.

// kwriter changes the Service's set one endpoint at a time: endpoint k
// is 10.244.20.k, in slice k%3, served by pool[k%len(pool)].
type kwriter struct {
	t     *testing.T
	a     admin
	svc   string
	truth *faults.Truth
	lo    int
	hi    int
}

func (w *kwriter) addr(k int) string { return fmt.Sprintf("10.244.20.%d", k%250+1) }
func (w *kwriter) id(k int) string   { return w.addr(k) + ":50051" }

func (w *kwriter) set() []string {
	var s []string
	for k := w.lo; k < w.hi; k++ {
		s = append(s, w.id(k))
	}
	return s
}

// write rewrites slice n from the current set, retrying while the API
// server comes back from a fault.
func (w *kwriter) write(n int) {
	w.t.Helper()
	var eps []endpoint
	for k := w.lo; k < w.hi; k++ {
		if k%3 == n {
			eps = append(eps, endpoint{addr: w.addr(k)})
		}
	}
	s := slice(fmt.Sprintf("%s-%d", w.svc, n), discoveryv1.AddressTypeIPv4, 50051, eps...)
	s.Namespace = "default"
	s.Labels = map[string]string{discoveryv1.LabelServiceName: w.svc, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}
	var err error
	if !wait.Until(60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(w.t.Context(), 3*time.Second)
		defer cancel()
		api := w.a.slices.EndpointSlices("default")
		var cur *discoveryv1.EndpointSlice
		cur, err = api.Get(ctx, s.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = api.Create(ctx, s, metav1.CreateOptions{})
		case err == nil:
			s.ResourceVersion = cur.ResourceVersion
			_, err = api.Update(ctx, s, metav1.UpdateOptions{})
		}
		return err == nil
	}) {
		w.t.Fatalf("write slice %s = %v after 60s of retries", s.Name, err)
	}
}

func (w *kwriter) add() {
	w.hi++
	w.write((w.hi - 1) % 3)
	w.truth.Append(w.set())
	time.Sleep(30 * time.Millisecond)
}

func (w *kwriter) remove() {
	w.lo++
	w.write((w.lo - 1) % 3)
	w.truth.Append(w.set())
	time.Sleep(30 * time.Millisecond)
}

func (w *kwriter) churn(n int) {
	for range n {
		if w.hi-w.lo < 3 {
			w.add()
		} else {
			w.remove()
		}
	}
}

func TestFaults(t *testing.T) {
	a := newAdmin(t)
	svc := fmt.Sprintf("faults-%d", time.Now().UnixNano()%1e6)
	a.createService(t, svc)
	proxy := registrytest.NewProxy(t, strings.TrimPrefix(shared.URL, "https://"))
	pool := make([]*testenv.HelloServer, 4)
	for i := range pool {
		pool[i] = testenv.StartHello(t, fmt.Sprintf("pool-%d", i))
	}
	// Endpoint k's address maps to pool[k%4]; nothing else is dialled.
	d := &loopbackDialer{t: t, to: map[string]string{}}
	for k := range 250 {
		d.to[fmt.Sprintf("10.244.20.%d:50051", k+1)] = pool[k%len(pool)].Addr
	}
	open := func() *kubernetes.Registry {
		r, err := kubernetes.New(kubernetes.WithRESTConfig(restConfig("https://"+proxy.Addr(), testenv.KubeAdminToken)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	faultCache := func() *resolver.Cache {
		// As in internal/testing/faults: the default mass-removal
		// guard, whose held sets the checker judges by what they keep.
		c := resolver.NewCache(resolver.WithLinger(0))
		t.Cleanup(func() { c.Close() })
		return c
	}
	type client struct {
		name string
		rec  *faults.Recorder
	}
	dialRec := func(r *kubernetes.Registry, c *resolver.Cache, name string) client {
		rec := faults.NewRecorder()
		t.Cleanup(rec.Close)
		cc, err := grpc.NewClient("wayfinder:///"+svc,
			grpc.WithResolvers(resolver.NewBuilder(r, resolver.WithCache(c))),
			grpc.WithContextDialer(d.dial),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultServiceConfig(rec.ServiceConfig()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		cc.Connect()
		return client{name, rec}
	}
	w := &kwriter{t: t, a: a, svc: svc, truth: &faults.Truth{}}
	w.add()
	w.add()
	var clients []client
	for i := range 3 {
		clients = append(clients, dialRec(open(), faultCache(), fmt.Sprintf("own-%d", i)))
	}
	sharedReg, sharedCache := open(), faultCache()
	for i := range 2 {
		clients = append(clients, dialRec(sharedReg, sharedCache, fmt.Sprintf("shared-%d", i)))
	}
	waitAll := func() {
		t.Helper()
		for _, c := range clients {
			if err := c.rec.WaitFor(w.truth.Final(), 60*time.Second); err != nil {
				t.Fatalf("client %s: %v; history %v", c.name, err, c.rec.Events())
			}
		}
	}
	waitAll()
	for _, f := range []struct {
		name string
		do   func()
	}{
		{"unreachable 1s", func() { proxy.Cut(); time.Sleep(time.Second); proxy.Restore() }},
		{"unreachable 3s", func() { proxy.Cut(); time.Sleep(3 * time.Second); proxy.Restore() }},
		{"API server restart", func() { shared.Restart(t) }},
	} {
		w.churn(3)
		t.Logf("fault: %s", f.name)
		f.do()
		w.churn(2)
	}
	// Down to zero endpoints and back: an empty set is a state too.
	for w.hi > w.lo {
		w.remove()
	}
	w.add()
	w.churn(2)
	waitAll()
	time.Sleep(2 * time.Second) // idle: nothing may be emitted
	truth := w.truth.Sets()
	for _, c := range clients {
		ev := c.rec.Events()
		if err := faults.Check(ev, truth, resolver.DefaultGuardHold); err != nil {
			t.Errorf("client %s: %v\nhistory: %v\ntruth: %v", c.name, err, ev, truth)
		}
	}
	t.Logf("%d states written; first client: %d events", len(truth), len(clients[0].rec.Events()))
}
