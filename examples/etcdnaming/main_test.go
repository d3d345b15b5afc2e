package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBothWays(t *testing.T) {
	srv := testenv.StartEtcd(t)
	var out bytes.Buffer
	if err := run(t.Context(), srv.Endpoint(), &out); err != nil {
		t.Fatalf("run() = %v; output:\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, want := range []string{
		"etcd naming resolver, etcd:////wayfinder/services/hello: answered by wf-1",
		"Wayfinder resolver, etcd://" + srv.Endpoint() + "/greeter?prefix=legacy: answered by legacy-1",
		"Addr 127.0.0.1:",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
