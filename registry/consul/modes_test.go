package consul_test

import (
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// TestReadModes: every read option works with blocking queries on the
// real agent: a watch with it follows a registration and a removal.
func TestReadModes(t *testing.T) {
	for name, opts := range map[string][]consul.Option{
		"stale":      {consul.WithConsistency(consul.ConsistencyStale)},
		"consistent": {consul.WithConsistency(consul.ConsistencyConsistent)},
		"cached":     {consul.WithAgentCache()},
		"near":       {consul.WithNear("_agent")},
		"dc":         {consul.WithDatacenters("dc1")},
		"tag":        {consul.WithTagFilter("blue")},
	} {
		t.Run(name, func(t *testing.T) {
			server := newReg(t, shared.HTTPAddr())
			client := newReg(t, shared.HTTPAddr(), opts...)
			svc := registrytest.ServiceName(t)
			blue := registrytest.MakeInstance(svc, 1)
			blue.Tags = []string{"blue"}
			red := registrytest.MakeInstance(svc, 2)
			red.Tags = []string{"red"}
			w := mustWatch(t, client, svc)
			nextUntil(t, w, 10*time.Second, "the empty set", func(in []registry.Instance) bool { return len(in) == 0 })
			for _, inst := range []registry.Instance{red, blue} {
				if err := server.Register(ctxT(t, 10*time.Second), inst); err != nil {
					t.Fatalf("Register = %v", err)
				}
			}
			want := []string{blue.ID, red.ID}
			if name == "tag" {
				want = []string{blue.ID}
			}
			nextUntil(t, w, 10*time.Second, "the instances", func(in []registry.Instance) bool { return sameIDs(in, want...) })
			if err := server.Deregister(ctxT(t, 10*time.Second), blue); err != nil {
				t.Fatalf("Deregister = %v", err)
			}
			want = want[1:]
			nextUntil(t, w, 10*time.Second, "blue gone", func(in []registry.Instance) bool { return sameIDs(in, want...) })
			_ = server.Deregister(ctxT(t, 10*time.Second), red)
		})
	}
}

// TestWarningAndForeignServices: services registered by other tools
// decode (their Consul ID is the instance ID), and warning instances are
// included only with WithWarning.
func TestWarningAndForeignServices(t *testing.T) {
	c, err := api.NewClient(&api.Config{Address: shared.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	svc := registrytest.ServiceName(t)
	for id, status := range map[string]string{"ok": api.HealthPassing, "meh": api.HealthWarning, "bad": api.HealthCritical} {
		err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: id, Name: svc, Address: "127.0.0.1", Port: 7000, Tags: []string{"x"},
			Check: &api.AgentServiceCheck{TTL: "10m", Status: status},
		})
		if err != nil {
			t.Fatalf("ServiceRegister(%s) = %v", id, err)
		}
		t.Cleanup(func() { c.Agent().ServiceDeregister(id) })
	}
	passing := newReg(t, shared.HTTPAddr())
	got := lookupUntil(t, passing, svc, 10*time.Second, "ok", func(in []registry.Instance) bool { return sameIDs(in, "ok") })
	if got[0].Address != "127.0.0.1:7000" || len(got[0].Tags) != 1 {
		t.Errorf("foreign instance = %+v", got[0])
	}
	if !got[0].Registered.IsZero() {
		t.Errorf("foreign instance without a stamp has Registered = %v, want zero", got[0].Registered)
	}

	// Wayfinder-style entries written without a stamp (older versions)
	// or with a malformed one decode, without a stamp, and the reserved
	// key never reaches Metadata.
	svc2 := registrytest.ServiceName(t) + "-stamps"
	for id, stamp := range map[string]string{"old": "", "bad": "yesterday", "good": "2026-01-02T03:04:05.123456789Z"} {
		meta := map[string]string{"wayfinder_id": id, "owner": "team"}
		if stamp != "" {
			meta["wayfinder_registered"] = stamp
		}
		err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: svc2 + ":" + id, Name: svc2, Address: "127.0.0.1", Port: 7001, Meta: meta})
		if err != nil {
			t.Fatalf("ServiceRegister(%s) = %v", id, err)
		}
		t.Cleanup(func() { c.Agent().ServiceDeregister(svc2 + ":" + id) })
	}
	got = lookupUntil(t, passing, svc2, 10*time.Second, "bad, good and old", func(in []registry.Instance) bool { return sameIDs(in, "bad", "good", "old") })
	want := map[string]time.Time{"bad": {}, "good": time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC), "old": {}}
	for _, inst := range got {
		if !inst.Registered.Equal(want[inst.ID]) {
			t.Errorf("%s: Registered = %v, want %v", inst.ID, inst.Registered, want[inst.ID])
		}
		if len(inst.Metadata) != 1 || inst.Metadata["owner"] != "team" {
			t.Errorf("%s: Metadata = %v, want only owner=team", inst.ID, inst.Metadata)
		}
	}
	warning := newReg(t, shared.HTTPAddr(), consul.WithWarning())
	w := mustWatch(t, warning, svc)
	nextUntil(t, w, 10*time.Second, "meh and ok", func(in []registry.Instance) bool { return sameIDs(in, "meh", "ok") })
}
