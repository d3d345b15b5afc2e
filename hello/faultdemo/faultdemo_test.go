package faultdemo

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/leak"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

func TestMain(m *testing.M) {
	leak.VerifyTestMain(m, func() { resolver.DefaultCache().Close() })
}

// TestDemo runs the demo as the README's command does, shorter: servers
// are stopped and restarted on new ports while the client calls, and not
// one call may fail.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	ok, err := Run(t.Context(), Config{Registry: "mem://demo-test", Duration: 4 * time.Second, Servers: 3,
		FaultInterval: 700 * time.Millisecond, Rate: 300, Workers: 4}, &out)
	t.Log("\n" + out.String())
	if err != nil || !ok {
		t.Fatalf("Run() = %v, %v; want a PASS", ok, err)
	}
	if !strings.Contains(out.String(), "RESULT: PASS") || !strings.Contains(out.String(), " 0 failed") {
		t.Fatalf("demo output has no passing RESULT line")
	}
}

func TestDemoRejectsBadRegistry(t *testing.T) {
	for _, reg := range []string{"nosuch://x", "mem://?x=1", "mem://u:p@h"} {
		var out bytes.Buffer
		if _, err := Run(t.Context(), Config{Registry: reg, Duration: time.Second, Servers: 3, FaultInterval: time.Second, Rate: 10, Workers: 1}, &out); err == nil {
			t.Errorf("Run(-registry %q) = nil error, want one", reg)
		}
	}
}

func runOn(t *testing.T, reg string) {
	var out bytes.Buffer
	ok, err := Run(t.Context(), Config{Registry: reg, Duration: 4 * time.Second, Servers: 3,
		FaultInterval: 900 * time.Millisecond, Rate: 200, Workers: 4}, &out)
	t.Log("\n" + out.String())
	if err != nil || !ok {
		t.Fatalf("Run(-registry %s) = %v, %v; want a PASS", reg, ok, err)
	}
}

func TestDemoConsul(t *testing.T) { runOn(t, "consul://"+testenv.StartConsul(t).HTTPAddr()) }

func TestDemoEtcd(t *testing.T) { runOn(t, "etcd://"+testenv.StartEtcd(t).ClientAddr) }

// TestDemoUnreachableRegistry: with no registry answering, the demo says
// the servers could not be registered, and never that they were.
func TestDemoUnreachableRegistry(t *testing.T) {
	var out bytes.Buffer
	reg := fmt.Sprintf("consul://127.0.0.1:%d", testenv.FreePort(t))
	ok, err := Run(t.Context(), Config{Registry: reg, Duration: time.Second, Servers: 3, FaultInterval: time.Second, Rate: 10, Workers: 1}, &out)
	if ok || err == nil || !strings.Contains(err.Error(), "registered 0 of 3") {
		t.Errorf("Run(-registry %s) = %v, %v; want an error saying 0 of 3 servers are registered", reg, ok, err)
	}
	if strings.Contains(out.String(), "registered in") {
		t.Errorf("the demo claims servers were registered:\n%s", out.String())
	}
}
