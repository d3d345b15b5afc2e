package faultdemo

import (
	"bytes"
	"fmt"
	"net"
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
	for _, reg := range []string{"nosuch://x", "mem://?x=1", "mem://u:p@h", "mem://u:s3cr3t-PW@h:bad"} {
		var out bytes.Buffer
		_, err := Run(t.Context(), Config{Registry: reg, Duration: time.Second, Servers: 3, FaultInterval: time.Second, Rate: 10, Workers: 1}, &out)
		if err == nil {
			t.Errorf("Run(-registry %q) = nil error, want one", reg)
		} else if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(out.String(), "s3cr3t") {
			t.Errorf("Run(-registry %q) = %v; the error or the output shows the password", reg, err)
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

// TestDemoFixedPorts: -listen host:P runs the servers on P and P+1, and
// a restarted server takes the port of the one it replaced.
func TestDemoFixedPorts(t *testing.T) {
	var base int
	for base == 0 {
		p := testenv.FreePort(t)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1)); err == nil {
			l.Close()
			base = p
		}
	}
	var out bytes.Buffer
	ok, err := Run(t.Context(), Config{Registry: "mem://demo-ports", Duration: 3 * time.Second, Servers: 2,
		FaultInterval: 700 * time.Millisecond, Rate: 100, Workers: 2, Listen: fmt.Sprintf("127.0.0.1:%d", base)}, &out)
	t.Log("\n" + out.String())
	if err != nil || !ok {
		t.Fatalf("Run(-listen 127.0.0.1:%d) = %v, %v; want a PASS", base, ok, err)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if !strings.HasPrefix(line, "fault ") {
			continue
		}
		if !strings.HasSuffix(line, fmt.Sprintf(":%d", base)) && !strings.HasSuffix(line, fmt.Sprintf(":%d", base+1)) {
			t.Errorf("restart outside ports %d..%d: %s", base, base+1, line)
		}
	}
	if _, err := Run(t.Context(), Config{Registry: "mem://", Duration: time.Second, Servers: 2, FaultInterval: time.Second,
		Rate: 1, Workers: 1, Listen: "nohostport"}, &out); err == nil || !strings.Contains(err.Error(), "-listen") {
		t.Errorf("Run(-listen nohostport) = %v, want an error about -listen", err)
	}
}

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
