package kubernetes

import (
	"fmt"
	"slices"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

func ptr[T any](v T) *T { return &v }

type ep struct {
	addr                        string
	ready, serving, terminating *bool
	zone                        string
}

func mkSlice(name string, typ discoveryv1.AddressType, port int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name},
		AddressType: typ,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(port)}, {Name: ptr("metrics"), Port: ptr(int32(9090))}},
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
	return out
}

func TestMergeUnionAndDedupe(t *testing.T) {
	all := map[string]*discoveryv1.EndpointSlice{
		"a": mkSlice("a", discoveryv1.AddressTypeIPv4, 50051, ep{addr: "10.244.0.1"}, ep{addr: "10.244.0.2"}),
		"b": mkSlice("b", discoveryv1.AddressTypeIPv4, 50051, ep{addr: "10.244.0.2"}, ep{addr: "10.244.0.3", zone: "z1"}),
		"c": mkSlice("c", discoveryv1.AddressTypeIPv6, 50051, ep{addr: "fd00:10:244::4"}),
	}
	got := merge("hello", "grpc", all)
	want := []string{"10.244.0.1:50051", "10.244.0.2:50051", "10.244.0.3:50051", "[fd00:10:244::4]:50051"}
	if !slices.Equal(addrs(got), want) {
		t.Fatalf("merge(3 slices) = %v, want %v", addrs(got), want)
	}
	for _, i := range got {
		if i.Service != "hello" || i.ID != i.Address {
			t.Errorf("instance %+v: want Service hello and ID = Address", i)
		}
		if i.Address == "10.244.0.3:50051" && i.Zone != "z1" {
			t.Errorf("Zone of %s = %q, want z1", i.Address, i.Zone)
		}
	}
	if got := merge("hello", "metrics", all); len(got) != 4 || got[0].Address != "10.244.0.1:9090" {
		t.Errorf("merge(port metrics) = %v, want the 4 addresses on 9090", addrs(got))
	}
	if got := merge("hello", "nosuch", all); len(got) != 0 {
		t.Errorf("merge(port nosuch) = %v, want none", addrs(got))
	}
}

func TestMergeConditions(t *testing.T) {
	T, F := ptr(true), ptr(false)
	for _, tc := range []struct {
		name string
		eps  []ep
		want []string
	}{
		{"nil conditions are ready", []ep{{addr: "10.0.0.1"}}, []string{"10.0.0.1:1"}},
		{"ready used, terminating only as last resort, not serving excluded", []ep{
			{addr: "10.0.0.1", ready: T, serving: T, terminating: F},
			{addr: "10.0.0.2", ready: F, serving: T, terminating: T},
			{addr: "10.0.0.3", ready: F, serving: F, terminating: F},
		}, []string{"10.0.0.1:1"}},
		{"no ready: serving and terminating kept", []ep{
			{addr: "10.0.0.2", ready: F, serving: T, terminating: T},
			{addr: "10.0.0.3", ready: F, serving: F, terminating: T},
			{addr: "10.0.0.4", ready: F},
		}, []string{"10.0.0.2:1"}},
		{"nothing serving: empty", []ep{
			{addr: "10.0.0.3", ready: F, serving: F, terminating: T},
		}, []string{}},
		{"an address ready in one slice and terminating in another is ready", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all := map[string]*discoveryv1.EndpointSlice{"s": mkSlice("s", discoveryv1.AddressTypeIPv4, 1, tc.eps...)}
			if tc.eps == nil {
				all = map[string]*discoveryv1.EndpointSlice{
					"new": mkSlice("new", discoveryv1.AddressTypeIPv4, 1, ep{addr: "10.0.0.9", ready: T}),
					"old": mkSlice("old", discoveryv1.AddressTypeIPv4, 1, ep{addr: "10.0.0.9", ready: F, serving: T, terminating: T}, ep{addr: "10.0.0.8", ready: F, serving: T, terminating: T}),
				}
				tc.want = []string{"10.0.0.9:1"}
			}
			if got := addrs(merge("s", "grpc", all)); !slices.Equal(got, tc.want) {
				t.Fatalf("merge = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMergeManagedAndLabels(t *testing.T) {
	s := mkSlice("m", discoveryv1.AddressTypeIPv4, 7, ep{addr: "10.0.0.1"})
	s.Labels = map[string]string{discoveryv1.LabelManagedBy: ManagedBy}
	s.Annotations = map[string]string{AnnotationInstance: `{"id":"vm-1","version":"v2","weight":5,"tags":["x"],"metadata":{"k":"v"}}`}
	f := mkSlice("f", discoveryv1.AddressTypeIPv4, 7, ep{addr: "10.0.0.2"})
	f.Labels = map[string]string{LabelVersion: "v9", LabelWeight: "3"}
	got := merge("s", "grpc", map[string]*discoveryv1.EndpointSlice{"m": s, "f": f})
	want := []registry.Instance{
		{ID: "10.0.0.2:7", Service: "s", Address: "10.0.0.2:7", Version: "v9", Weight: 3},
		{ID: "vm-1", Service: "s", Address: "10.0.0.1:7", Version: "v2", Weight: 5, Tags: []string{"x"}, Metadata: map[string]string{"k": "v"}},
	}
	if len(got) != 2 || !got[0].Equal(want[0]) || !got[1].Equal(want[1]) {
		t.Fatalf("merge = %+v, want %+v", got, want)
	}
}

func TestChoosePortAndNames(t *testing.T) {
	r := &Registry{namespace: "default"}
	for in, want := range map[string]serviceRef{"hello": {"hello", "default"}, "hello.prod": {"hello", "prod"}} {
		if got, err := r.ref(in); err != nil || got != want {
			t.Errorf("ref(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"Hello", "1hello", "a.b.c", "hello.Prod", fmt.Sprintf("x%070d", 0)} {
		if _, err := r.ref(bad); err == nil {
			t.Errorf("ref(%q) = nil error, want one", bad)
		}
	}
}

func TestMergePodOverManaged(t *testing.T) {
	m := mkSlice("m", discoveryv1.AddressTypeIPv4, 7, ep{addr: "10.0.0.1"})
	m.Labels = map[string]string{discoveryv1.LabelManagedBy: ManagedBy}
	m.Annotations = map[string]string{AnnotationInstance: `{"id":"pod-1"}`}
	f := mkSlice("f", discoveryv1.AddressTypeIPv4, 7, ep{addr: "10.0.0.1", ready: ptr(false), serving: ptr(true), terminating: ptr(true)})
	got := merge("s", "grpc", map[string]*discoveryv1.EndpointSlice{"m": m, "f": f})
	if len(got) != 1 || got[0].ID != "10.0.0.1:7" {
		t.Fatalf("merge(managed and Pod slice of one address) = %+v; want the Pod's endpoint only", got)
	}
}

// TestRenewedOnly: a renewal that changes nothing but the stamp of a live
// registration is told apart from every change the merge would see, and
// whenever it says "renewal only" the merge gives the same set.
func TestRenewedOnly(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	managed := func(annotation string, eps ...ep) *discoveryv1.EndpointSlice {
		s := mkSlice("m", discoveryv1.AddressTypeIPv4, 7, eps...)
		s.Labels = map[string]string{discoveryv1.LabelManagedBy: ManagedBy}
		s.Annotations = map[string]string{AnnotationInstance: annotation}
		return s
	}
	stamp := func(renewed time.Time, extra string) string {
		return fmt.Sprintf(`{"id":"vm-1","version":"v2"%s,"renewed":%q,"ttlSeconds":30}`, extra, renewed.Format(time.RFC3339Nano))
	}
	prev := managed(stamp(now.Add(-10*time.Second), ""), ep{addr: "10.0.0.1"})
	for _, tc := range []struct {
		name string
		prev *discoveryv1.EndpointSlice
		next *discoveryv1.EndpointSlice
		want bool
	}{
		{"renewal", prev, managed(stamp(now, ""), ep{addr: "10.0.0.1"}), true},
		{"metadata changed", prev, managed(stamp(now, `,"metadata":{"k":"v"}`), ep{addr: "10.0.0.1"}), false},
		{"address changed", prev, managed(stamp(now, ""), ep{addr: "10.0.0.2"}), false},
		{"no longer ready", prev, managed(stamp(now, ""), ep{addr: "10.0.0.1", ready: ptr(false)}), false},
		{"renewed after it expired", managed(stamp(now.Add(-31*time.Second), ""), ep{addr: "10.0.0.1"}), managed(stamp(now, ""), ep{addr: "10.0.0.1"}), false},
		{"not the backend's", mkSlice("m", discoveryv1.AddressTypeIPv4, 7, ep{addr: "10.0.0.1"}), mkSlice("m", discoveryv1.AddressTypeIPv4, 7, ep{addr: "10.0.0.1"}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := renewedOnly(view(tc.prev), view(tc.next), now); got != tc.want {
				t.Fatalf("renewedOnly = %v, want %v", got, tc.want)
			}
			if tc.want {
				a, _ := mergeAt("s", "grpc", "", map[string]sliceView{"m": view(tc.prev)}, now, nil)
				b, _ := mergeAt("s", "grpc", "", map[string]sliceView{"m": view(tc.next)}, now, nil)
				if !slices.EqualFunc(a, b, registry.Instance.Equal) {
					t.Fatalf("a renewal changed the merge: %+v, then %+v", a, b)
				}
			}
		})
	}
	all := map[string]sliceView{"a": view(prev), "b": view(managed(stamp(now.Add(-20*time.Second), ""), ep{addr: "10.0.0.1"}))}
	if got, want := firstExpiry(all, now), now.Add(10*time.Second); !got.Equal(want) {
		t.Errorf("firstExpiry = %v, want %v (the older stamp's)", got, want)
	}
}
