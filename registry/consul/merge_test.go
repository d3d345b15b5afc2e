package consul_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
)

// An instance ID is unique across a registry (registry.Instance.Key):
// where two datacenters hold the same ID, the merged set has one
// instance, the first configured datacenter's. Before the rule, the
// merge returned both.
func TestMultiDCSameIDFirstDatacenterWins(t *testing.T) {
	port := map[string]int{"dc1": 1111, "dc2": 2222}
	f := newFake(t, func(_ int, dc string) answer {
		body := fmt.Sprintf(`[{"Node":{"Node":"n-%s","Address":"127.0.0.1"},"Service":{"ID":"svc:a","Service":"svc","Address":"127.0.0.1","Port":%d,"Meta":{"wayfinder_id":"a"}},"Checks":[]}]`, dc, port[dc])
		return answer{body: body, index: 7, hold: time.Hour}
	})
	for _, order := range [][]string{{"dc1", "dc2"}, {"dc2", "dc1"}} {
		want := fmt.Sprintf("127.0.0.1:%d", port[order[0]])
		reg := fakeReg(t, f, consul.WithDatacenters(order...))
		w := mustWatch(t, reg, "svc")
		got := nextUntil(t, w, 10*time.Second, "a", func(in []registry.Instance) bool { return len(in) > 0 })
		if len(got) != 1 || got[0].Address != want {
			t.Errorf("datacenters %v: Next() = %v, want one instance a at %s", order, got, want)
		}
		got, err := reg.Lookup(ctxT(t, 10*time.Second), "svc")
		if err != nil || len(got) != 1 || got[0].Address != want {
			t.Errorf("datacenters %v: Lookup() = %v, %v; want one instance a at %s", order, got, err, want)
		}
	}
}
