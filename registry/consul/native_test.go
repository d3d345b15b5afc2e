package consul_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/cctest"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// TestNativeWeightsAndForeignFields: registrations Wayfinder did not
// write, made through Consul's own API as Kitex and others do, are
// instances: Weights.Passing is their weight, and a foreign value under
// a Wayfinder key keeps the instance with that field's default and is
// reported once per instance and value.
func TestNativeWeightsAndForeignFields(t *testing.T) {
	var logs cctest.SyncBuffer
	r := newReg(t, shared.HTTPAddr(), consul.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	c := r.Client()
	svc := registrytest.ServiceName(t)
	regs := []*api.AgentServiceRegistration{
		{ID: "kitex-1", Name: svc, Address: "127.0.0.1", Port: 7101, Weights: &api.AgentWeights{Passing: 7, Warning: 1}},
		{ID: "plain", Name: svc, Address: "127.0.0.1", Port: 7102},
		{ID: "heavy", Name: svc, Address: "127.0.0.1", Port: 7103, Weights: &api.AgentWeights{Passing: 2, Warning: 1},
			Meta: map[string]string{"wayfinder_weight": "heavy", "wayfinder_zone": "z1", "wayfinder_registered": "yesterday"}},
	}
	for _, reg := range regs {
		if err := c.Agent().ServiceRegister(reg); err != nil {
			t.Fatalf("ServiceRegister(%s) = %v", reg.ID, err)
		}
		t.Cleanup(func() { c.Agent().ServiceDeregister(reg.ID) })
	}
	want := map[string]int{"kitex-1": 7, "plain": 1, "heavy": 2}
	var got []registry.Instance
	for range 3 {
		got = lookupUntil(t, r, svc, 10*time.Second, "3 instances", func(s []registry.Instance) bool { return len(s) == 3 })
		for _, in := range got {
			if in.EffectiveWeight() != want[in.ID] {
				t.Errorf("Lookup(%q): %s has weight %d, want %d", svc, in.ID, in.EffectiveWeight(), want[in.ID])
			}
			if in.ID == "heavy" && in.Zone != "z1" {
				t.Errorf("Lookup(%q): heavy is in zone %q, want z1: one bad field must not cost the others", svc, in.Zone)
			}
			if in.ID == "plain" && in.Weight != 0 {
				t.Errorf("Lookup(%q): plain has Weight %d; Consul's default Weights.Passing 1 is the default weight, 0", svc, in.Weight)
			}
		}
	}
	w, err := r.Watch(ctxT(t, time.Second), svc)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	nextUntil(t, w, 10*time.Second, "3 instances", func(s []registry.Instance) bool { return len(s) == 3 })

	var fields []string
	for _, p := range r.FieldProblems(svc) {
		fields = append(fields, p.ID+":"+p.Field+"="+p.Value)
	}
	if want := "heavy:Meta.wayfinder_registered=yesterday heavy:Meta.wayfinder_weight=heavy"; strings.Join(fields, " ") != want {
		t.Errorf("FieldProblems(%q) = %v; want %s", svc, fields, want)
	}
	if n := r.FieldProblemCount(); n != 2 {
		t.Errorf("FieldProblemCount() = %d after 3 lookups and a watch; want 2, once per instance and value", n)
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"consul: ignoring a field"); n != 2 {
		t.Errorf("%d Warn records about ignored fields; want 2. Logs:\n%s", n, logs.String())
	}
}
