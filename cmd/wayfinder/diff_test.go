package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/multi"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// TestDiff: a real Consul agent and a real etcd holding a service
// partly alike: diff lists what is only in one and what differs, exits
// 1, says the same in JSON, and exits 0 once they hold the same.
func TestDiff(t *testing.T) {
	c, e := testenv.StartConsul(t), testenv.StartEtcd(t)
	oldURL, newURL := "consul://"+c.HTTPAddr(), "etcd://"+e.Endpoint()
	open := func(raw string) registry.Registry {
		r, err := registry.Open(t.Context(), raw)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	old, nw := open(oldURL), open(newURL)
	a, b, cc, d := registrytest.MakeInstance("hello", 1), registrytest.MakeInstance("hello", 2), registrytest.MakeInstance("hello", 3), registrytest.MakeInstance("orders", 4)
	b2 := b.Clone()
	b2.Weight, b2.Tags = 5, []string{"canary"}
	ctx := t.Context()
	for _, step := range []struct {
		r    registry.Registrar
		inst registry.Instance
	}{{old, a}, {nw, a}, {old, b}, {nw, b2}, {old, cc}, {nw, d}} {
		if err := step.r.Register(ctx, step.inst); err != nil {
			t.Fatalf("Register(%v) = %v", step.inst, err)
		}
	}
	out, errOut, code := wf(t, "diff", oldURL, newURL)
	for _, want := range []string{
		"~  hello    hello-i0002  weight \"1\" -> \"5\"; tags \"\" -> \"canary\"",
		"-  hello    hello-i0003  only in old (127.0.0.1:1027)",
		"+  orders   orders-i0004  only in new (127.0.0.1:1028)",
		"differ: 2 services, 4 instances: 1 only in old, 1 only in new, 1 differ",
	} {
		if code != 1 || !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("wayfinder diff %s %s = exit %d,\n%s%s\nwant exit 1 and %q", oldURL, newURL, code, out, errOut, want)
		}
	}
	if strings.Contains(out, "hello-i0001") {
		t.Errorf("wayfinder diff listed a, which both hold alike:\n%s", out)
	}
	out, _, code = wf(t, "diff", "-o", "json", oldURL+"/hello", newURL+"/hello")
	var got struct {
		Equal bool `json:"equal"`
		multi.Report
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 1 || got.Equal || got.Services != 1 || len(got.Differences) != 2 ||
		got.Differences[0].Kind != multi.Differs || got.Differences[1].Kind != multi.OnlyOld {
		t.Errorf("wayfinder diff -o json <old>/hello <new>/hello = exit %d, %s (%v); want exit 1, b differs and c only in old", code, out, err)
	}

	// Make them alike.
	for _, step := range []struct {
		r    registry.Registrar
		inst registry.Instance
	}{{nw, b}, {nw, cc}, {old, d}} {
		if err := step.r.Register(ctx, step.inst); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code = wf(t, "diff", oldURL, newURL)
	if code != 0 || !strings.Contains(out, "equal: 2 services, 4 instances") {
		t.Errorf("wayfinder diff of equal registries = exit %d, %q %q; want exit 0, equal", code, out, errOut)
	}
	// A multi:// URL is a registry like any: the union of both equals each.
	out, errOut, code = wf(t, "diff", oldURL, "multi://?read="+oldURL+","+newURL)
	if code != 0 {
		t.Errorf("wayfinder diff <consul> <multi of both> = exit %d, %q %q; want exit 0", code, out, errOut)
	}
}

// TestDiffErrors: trouble is exit status 2, within -timeout, naming the
// registry; differences are never reported for a registry not read.
func TestDiffErrors(t *testing.T) {
	frozen := "etcd://" + registrytest.NewFrozenListener(t)
	for _, args := range [][]string{
		{"diff", "-timeout", "2s", "mem://", frozen},
		{"diff", "-timeout", "2s", frozen + "/hello", "mem:///hello"},
	} {
		var out, errOut bytes.Buffer
		start := time.Now()
		code := run(t.Context(), args, &out, &errOut)
		if took := time.Since(start); code != 2 || took > 2*time.Second+slack || !strings.Contains(errOut.String(), "did not answer") || out.Len() != 0 {
			t.Errorf("wayfinder %s = exit %d after %v, %q %q; want exit 2 within -timeout, saying the registry did not answer, nothing on stdout",
				strings.Join(args, " "), code, took, out.String(), errOut.String())
		}
	}
	for _, args := range [][]string{
		{"diff", "mem://"},
		{"diff", "mem:///a", "mem:///b"},
		{"diff", "-o", "yaml", "mem://", "mem://"},
		{"diff", "nope://", "mem://"},
	} {
		if _, errOut, code := wf(t, args...); code != 2 {
			t.Errorf("wayfinder %s = exit %d, %q; want 2", strings.Join(args, " "), code, errOut)
		}
	}
}
