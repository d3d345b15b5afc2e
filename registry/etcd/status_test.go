package etcd_test

import (
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Status has the shape Consul's has (registry.RegistrationStatus): an
// instance is pending, then registered under the lease, retrying while
// etcd is gone, registered again with a second write after it returns,
// and unknown once deregistered.
func TestStatus(t *testing.T) {
	srv := testenv.StartEtcd(t)
	r := newRegistry(t, []string{srv.Endpoint()})
	a := inst(svcName(t), 1)
	if s := r.Status(a); s.State != registry.StateUnknown {
		t.Fatalf("Status(unregistered) = %v, want unknown", s.State)
	}
	if err := r.Register(ctxFor(t, 10*time.Second), a); err != nil {
		t.Fatal(err)
	}
	if s := r.Status(a); s.State != registry.StateRegistered || s.Registrations != 1 || !s.Healthy || s.Err != nil {
		t.Fatalf("Status after Register = %+v, want registered once, healthy, no error", s)
	}
	srv.Kill(t)
	wait.For(t, 30*time.Second, "retrying while etcd is down", func() bool {
		s := r.Status(a)
		return s.State == registry.StateRetrying && s.Err != nil
	})
	srv.Restart(t)
	wait.For(t, 30*time.Second, "registered again, with a second write", func() bool {
		s := r.Status(a)
		return s.State == registry.StateRegistered && s.Registrations >= 2
	})
	if err := r.Deregister(ctxFor(t, 10*time.Second), a); err != nil {
		t.Fatal(err)
	}
	if s := r.Status(a); s.State != registry.StateUnknown {
		t.Fatalf("Status after Deregister = %v, want unknown", s.State)
	}
}
