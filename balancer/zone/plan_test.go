package zone

import (
	"fmt"
	"math"
	"strings"
	"testing"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/connectivity"
)

// zones builds zone children from "name:healthy/total" specs; a zone
// with healthy capacity has a READY child, one without a failing child.
func zones(t *testing.T, specs ...string) map[string]*zoneChild {
	t.Helper()
	out := map[string]*zoneChild{}
	for _, s := range specs {
		z := &zoneChild{}
		if _, err := fmt.Sscanf(strings.Replace(s, ":", " ", 1), "%s %d/%d", &z.name, &z.healthy, &z.total); err != nil {
			t.Fatalf("zone spec %q: %v", s, err)
		}
		z.state = gbalancer.State{ConnectivityState: connectivity.TransientFailure, Picker: base.NewErrPicker(nil)}
		if z.healthy > 0 {
			z.state.ConnectivityState = connectivity.Ready
		}
		out[z.name] = z
	}
	return out
}

func names(lv [][]*zoneChild) string {
	var out []string
	for _, level := range lv {
		var ns []string
		for _, z := range level {
			ns = append(ns, z.name)
		}
		out = append(out, strings.Join(ns, "+"))
	}
	return strings.Join(out, " > ")
}

func TestLevels(t *testing.T) {
	for _, tc := range []struct {
		zones []string
		local string
		order []string
		want  string
	}{
		{[]string{"a:1/1", "b:1/1", "c:1/1"}, "a", nil, "a > b+c"},
		{[]string{"a:1/1", "b:1/1", "c:1/1"}, "", nil, "a+b+c"},
		{[]string{"a:1/1", "b:1/1", "c:1/1"}, "a", []string{"a", "c", "b"}, "a > c > b"},
		{[]string{"a:1/1", "b:1/1", "c:1/1", "d:1/1"}, "b", []string{"d"}, "b > d > a+c"},
		// Zones named but without endpoints are skipped.
		{[]string{"b:1/1"}, "a", []string{"x", "b"}, "b"},
		{nil, "a", []string{"b"}, ""},
	} {
		if got := names(levels(zones(t, tc.zones...), tc.local, tc.order)); got != tc.want {
			t.Errorf("levels(%v, local %q, order %v) = %q, want %q", tc.zones, tc.local, tc.order, got, tc.want)
		}
	}
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		zones    []string
		local    string
		order    []string
		minLocal float64
		want     map[string]float64 // share by zone; absent: none
	}{
		{[]string{"a:4/4", "b:4/4"}, "a", nil, 0.7, map[string]float64{"a": 1}},
		// 3/4 >= 0.7: all local.
		{[]string{"a:3/4", "b:4/4"}, "a", nil, 0.7, map[string]float64{"a": 1}},
		// 1/4 healthy against 0.5: half local, the rest spills over.
		{[]string{"a:1/4", "b:4/4"}, "a", nil, 0.5, map[string]float64{"a": 0.5, "b": 0.5}},
		// Local zone down: failover in order.
		{[]string{"a:0/4", "b:4/4", "c:4/4"}, "a", []string{"c", "b"}, 0.7, map[string]float64{"c": 1}},
		// No local zone: one level, shared by healthy capacity.
		{[]string{"a:1/1", "b:2/2"}, "", nil, 0.7, map[string]float64{"a": 1.0 / 3, "b": 2.0 / 3}},
		// Every level degraded: shares sum to less than 1.
		{[]string{"a:1/4", "b:1/4"}, "a", []string{"b"}, 1, map[string]float64{"a": 0.25, "b": 0.1875}},
		// Nothing healthy: nothing planned.
		{[]string{"a:0/4", "b:0/4"}, "a", nil, 0.7, map[string]float64{}},
	} {
		zs, ws := plan(levels(zones(t, tc.zones...), tc.local, tc.order), tc.minLocal)
		got := map[string]float64{}
		for i, z := range zs {
			got[z.name] = ws[i]
		}
		ok := len(got) == len(tc.want)
		for name, w := range tc.want {
			if g, in := got[name]; !in || math.Abs(g-w) > 1e-9 {
				ok = false
			}
		}
		if !ok {
			t.Errorf("plan(%v, local %q, order %v, minLocalShare %v) = %v, want %v", tc.zones, tc.local, tc.order, tc.minLocal, got, tc.want)
		}
	}
}

// TestHealthyCapacity: the child's state wins where it disagrees with
// the SubConns the balancer saw.
func TestHealthyCapacity(t *testing.T) {
	z := &zoneChild{total: 4, healthy: 2, state: gbalancer.State{ConnectivityState: connectivity.Ready, Picker: base.NewErrPicker(nil)}}
	if got := z.healthyCapacity(); got != 2 {
		t.Errorf("healthyCapacity(READY, 2 of 4 healthy) = %d, want 2", got)
	}
	z.healthy = 0
	if got := z.healthyCapacity(); got != 4 {
		t.Errorf("healthyCapacity(READY, no healthy SubConn seen) = %d, want 4", got)
	}
	z.healthy, z.state.ConnectivityState = 2, connectivity.Connecting
	if got := z.healthyCapacity(); got != 0 {
		t.Errorf("healthyCapacity(CONNECTING, 2 healthy) = %d, want 0", got)
	}
}
