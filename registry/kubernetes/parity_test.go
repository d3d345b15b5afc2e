package kubernetes_test

import (
	"context"
	"slices"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/cctest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/kubernetes"
)

// TestStatusAndMetrics: the Registry reports each registration's status
// (registry.StatusReporter) and its metrics, as etcd and Consul do: a
// registered instance is StateRegistered with one write; when its slice
// is deleted behind its back, the renewal writes it again, Changed is
// closed, and Registrations and the reregistrations counter say so;
// after Deregister it is StateUnknown.
func TestStatusAndMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	r := newReg(t, testenv.KubeAdminToken, kubernetes.WithTTL(2*time.Second), kubernetes.WithMeterProvider(mp))
	a := newAdmin(t)
	a.createService(t, "status")
	inst := registry.Instance{ID: "vm-status", Service: "status", Address: "10.244.17.1:7000"}
	if st := r.Status(inst); st.State != registry.StateUnknown {
		t.Fatalf("Status before Register = %v, want unknown", st.State)
	}
	if err := r.Register(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Register = %v", err)
	}
	st := r.Status(inst)
	if st.State != registry.StateRegistered || st.Err != nil || st.Registrations != 1 || !st.Healthy {
		t.Fatalf("Status after Register = %+v; want registered, once, healthy", st)
	}
	got := cctest.MetricSums(t, reader)
	if got["wayfinder.registration.instances"] != 1 || got["wayfinder.registration.registered"] != 1 ||
		got["wayfinder.registration.healthy"] != 1 || got["wayfinder.registration.reregistrations"] != 0 {
		t.Fatalf("metrics after Register = %v", got)
	}
	sel := metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=status," + discoveryv1.LabelManagedBy + "=" + kubernetes.ManagedBy}
	if err := a.slices.EndpointSlices("default").DeleteCollection(ctxT(t, 10*time.Second), metav1.DeleteOptions{}, sel); err != nil {
		t.Fatal(err)
	}
	select {
	case <-st.Changed:
	case <-time.After(30 * time.Second):
		t.Fatalf("Status(%v).Changed not closed 30s after its slice was deleted (TTL 2s)", inst)
	}
	wait.For(t, 30*time.Second, "the deleted slice written again", func() bool { return r.Status(inst).Registrations == 2 })
	if st := r.Status(inst); st.State != registry.StateRegistered || st.Err != nil {
		t.Fatalf("Status after the slice was written again = %+v; want registered", st)
	}
	if got := cctest.MetricSums(t, reader); got["wayfinder.registration.reregistrations"] != 1 {
		t.Fatalf("metrics after the slice was written again = %v; want reregistrations 1", got)
	}
	if err := r.Deregister(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatal(err)
	}
	if st := r.Status(inst); st.State != registry.StateUnknown {
		t.Fatalf("Status after Deregister = %v, want unknown", st.State)
	}
	if got := cctest.MetricSums(t, reader); got["wayfinder.registration.instances"] != 0 {
		t.Fatalf("metrics after Deregister = %v; want no instance", got)
	}
}

// TestDecodedInstancesValidated: what the backend decodes from slices it
// did not write itself is validated as every backend's is
// (driver.Sanitize): a Service's weight label that is not a number, or a
// tag Instance.Validate rejects in a managed slice's annotation, is
// dropped and reported as a field problem with the instance kept; an
// annotation whose ID Instance.Validate rejects leaves its endpoint out,
// reported too. Lookup and Watch agree, FieldProblems lists the
// problems, and the field_problems counter counts them.
func TestDecodedInstancesValidated(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	r := newReg(t, testenv.KubeAdminToken, kubernetes.WithMeterProvider(mp))
	a := newAdmin(t)
	const svc = "decoded"
	a.createService(t, svc)
	foreign := slice("decoded-pods", discoveryv1.AddressTypeIPv4, 7000, endpoint{addr: "10.244.18.1"})
	foreign.Labels = map[string]string{kubernetes.LabelWeight: "heavy"}
	a.putSlice(t, svc, foreign)
	managed := func(name, addr, annotation string) {
		s := slice(name, discoveryv1.AddressTypeIPv4, 7000, endpoint{addr: addr})
		s.Namespace = "default"
		s.Labels = map[string]string{discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: kubernetes.ManagedBy}
		s.Annotations = map[string]string{kubernetes.AnnotationInstance: annotation}
		if _, err := a.slices.EndpointSlices("default").Create(ctxT(t, 10*time.Second), s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	managed("decoded-tag", "10.244.18.2", `{"id":"vm-tag","tags":["ok",""]}`)
	managed("decoded-id", "10.244.18.3", `{"id":"vm bad id"}`)

	want := []string{"10.244.18.1:7000", "10.244.18.2:7000"}
	got, err := r.Lookup(ctxT(t, 10*time.Second), svc)
	if err != nil || !slices.Equal(addrs(got), want) {
		t.Fatalf("Lookup(%q) = %v, %v; want %v", svc, addrs(got), err, want)
	}
	for _, inst := range got {
		if err := inst.Validate(); err != nil {
			t.Errorf("Lookup(%q) returned an invalid instance %v: %v", svc, inst, err)
		}
		if inst.ID == "vm-tag" && !slices.Equal(inst.Tags, []string{"ok"}) {
			t.Errorf("Lookup(%q): %v has tags %q; want [ok]", svc, inst, inst.Tags)
		}
	}
	var fields []string
	for _, p := range r.FieldProblems(svc) {
		fields = append(fields, p.ID+" "+p.Field)
	}
	wantFields := []string{
		"10.244.18.1:7000 labels[" + kubernetes.LabelWeight + "]",
		"vm bad id annotations[" + kubernetes.AnnotationInstance + "].id",
		"vm-tag annotations[" + kubernetes.AnnotationInstance + "].tags",
	}
	if !slices.Equal(fields, wantFields) {
		t.Fatalf("FieldProblems(%q) = %q; want %q", svc, fields, wantFields)
	}
	w, err := r.Watch(ctxT(t, 5*time.Second), svc)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	nextUntil(t, w, 30*time.Second, want, nil)
	if got := cctest.MetricSums(t, reader)["wayfinder.discovery.field_problems"]; got != 3 {
		t.Fatalf("field_problems = %d, want 3 (each problem once, however often it is read)", got)
	}
}
