package xds_test

import (
	"errors"
	"os/exec"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
)

// startPython starts testdata/xdsclient.py with Debian's python3 and
// grpcio (make xds-clients installs them; missing, the test fails); with
// a header "name=value", every call carries it.
func startPython(t testing.TB, name, addr string, header ...string) *client {
	t.Helper()
	args := append([]string{"testdata/xdsclient.py", "../hello/hellopb/hello.proto", "xds:///hello"}, header...)
	return startCommand(t, name, addr, exec.Command("/usr/bin/python3", args...))
}

// TestPythonClient: Python's grpcio (1.51) follows the registry through
// the xDS server, and a registry outage costs it no call.
func TestPythonClient(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	xreg := store.Open()
	t.Cleanup(func() { xreg.Close() })
	startHello(t, reg, "a")
	b := startHello(t, reg, "b")
	srv, addr, _ := startXDS(t, xreg, "127.0.0.1:0")
	c := startPython(t, "python", addr)
	c.waitPicks(t, 0, "a", "b")

	mark := c.calls()
	startHello(t, reg, "c")
	c.waitPicks(t, mark, "c")
	if err := reg.Deregister(t.Context(), b.Instance()); err != nil {
		t.Fatalf("Deregister(b) = %v", err)
	}
	c.waitOnly(t, 300, "a", "c")

	xreg.SetOutage(errors.New("partition"))
	wait.For(t, 10*time.Second, "the xDS server to see the outage", func() bool { return srv.Stats().Outages > 0 })
	mark = c.calls()
	c.waitCalls(t, mark, 300)
	c.waitPicks(t, mark, "a", "c")
	xreg.SetOutage(nil)
}
