package main

import (
	"strings"
	"testing"

	"go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
)

// TestInstancesEtcdNamingAndProblems: instances finds entries etcd's
// endpoints.Manager wrote once told their prefix, says how when it is
// not, blames no health checks for keys that hold no instance, and
// names the fields it replaced with defaults.
func TestInstancesEtcdNamingAndProblems(t *testing.T) {
	t.Parallel()
	m := testenv.StartEtcd(t)
	cli := testenv.NewEtcdClient(t, nil, m.Endpoint())
	ctx := t.Context()
	em, err := endpoints.NewManager(cli, "naming/team-a/orders")
	if err != nil {
		t.Fatal(err)
	}
	if err := em.AddEndpoint(ctx, "naming/team-a/orders/o1", endpoints.Endpoint{Addr: "127.0.0.1:7101",
		Metadata: map[string]any{"wayfinder": 1, "weight": "heavy", "zone": "z9"}}); err != nil {
		t.Fatal(err)
	}
	base := "etcd://" + m.Endpoint()

	_, errOut, code := wf(t, "instances", base+"/orders")
	if code != 1 || !strings.Contains(errOut, "endpoints.Manager") || !strings.Contains(errOut, "?prefix=foo/bar") {
		t.Errorf("instances without the prefix = %d %q; want a hint on etcd naming prefixes", code, errOut)
	}
	out, errOut, code := wf(t, "instances", base+"/orders?prefix=naming/team-a")
	if code != 0 || !strings.Contains(out, "o1") || !strings.Contains(out, "z9") ||
		!strings.Contains(out, `warning: orders/o1: Metadata.weight = "\"heavy\"" ignored`) {
		t.Errorf("instances with the prefix = %d %q %q; want o1 in z9 and a warning about its weight", code, out, errOut)
	}

	if _, err := cli.Put(ctx, "/wayfinder/services/broken/b1", "not json"); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = wf(t, "instances", base+"/broken")
	if code != 1 || strings.Contains(errOut, "health") || !strings.Contains(errOut, "none holds an instance") {
		t.Errorf("instances of keys without instances = %d %q; want a hint about values, not health checks", code, errOut)
	}
}
