package harness

import (
	"strings"
	"testing"
)

// TestScalePicker runs scale_picker at a tiny size on every backend and
// checks what holds anywhere: every change reached the picker (the
// scenario fails otherwise, after checking each picker by picking from
// it, and on the first change with real calls), and each picker came
// after the resolver's state and the READY it follows.
func TestScalePicker(t *testing.T) {
	cfg := tiny("memory", "etcd", "consul")
	cfg.Scenarios = []string{"scale_picker"}
	cfg.ScaleInsts, cfg.ScaleChanges = 20, 3
	rep := Run(t, cfg)
	for _, f := range rep.Failures {
		t.Errorf("scale_picker on %s run %d failed: %s", f.Backend, f.Run, f.Error)
	}
	for _, be := range cfg.Backends {
		for _, pol := range scalePolicies {
			m := func(k string) float64 { return metric(t, rep, "scale_picker", be, pol.name, k) }
			if got := m("changes"); got != float64(2*cfg.ScaleChanges) {
				t.Errorf("%s/%s: %v changes reached the picker, want %d", be, pol.name, got, 2*cfg.ScaleChanges)
			}
			if got := m("instances"); got != float64(cfg.ScaleInsts) {
				t.Errorf("%s/%s: instances = %v, want %d", be, pol.name, got, cfg.ScaleInsts)
			}
			if r, ready, pk := m("first_resolver_ms"), m("first_ready_ms"), m("first_picker_ms"); !(r <= ready && ready <= pk) {
				t.Errorf("%s/%s: first resolver state %v ms, all READY %v ms, full picker %v ms: want them in that order", be, pol.name, r, ready, pk)
			}
			for _, op := range []string{"register", "deregister"} {
				if res, pk := m(op+"_resolver_max_ms"), m(op+"_picker_max_ms"); pk < res {
					t.Errorf("%s/%s: %s: slowest picker %v ms before the slowest resolver state %v ms", be, pol.name, op, pk, res)
				}
			}
			if got := m("allocs_per_change"); got <= 0 {
				t.Errorf("%s/%s: allocs_per_change = %v, want it counted", be, pol.name, got)
			}
		}
	}
	md := rep.Markdown("benchmarks", nil)
	for _, want := range []string{"to the picker", "| memory: one service, 20 instances serving | round_robin | wayfinder_p2c_ewma |", "| consul: one service, 20 instances serving"} {
		if !strings.Contains(md, want) {
			t.Errorf("benchmarks.md lacks %q", want)
		}
	}
}
