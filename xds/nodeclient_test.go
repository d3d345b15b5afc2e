package xds_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
)

// nodeXDSVersion is the @grpc/grpc-js-xds version that make xds-clients
// installs into $HOME/.cache/wayfinder/node-xds-<version>.
const nodeXDSVersion = "1.14.1"

// startNode starts testdata/xdsclient.js with Debian's node and the npm
// packages make xds-clients installed (WAYFINDER_NODE_XDS_DIR, else the
// default cache directory). Missing, the test fails. With a header
// "name=value", every call carries it.
func startNode(t testing.TB, name, addr string, header ...string) *client {
	t.Helper()
	dir := os.Getenv("WAYFINDER_NODE_XDS_DIR")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(home, ".cache", "wayfinder", "node-xds-"+nodeXDSVersion)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@grpc", "grpc-js-xds")); err != nil {
		t.Fatalf("@grpc/grpc-js-xds is not installed in %s (run make xds-clients): %v", dir, err)
	}
	cmd := exec.Command("node", append([]string{"testdata/xdsclient.js", "../hello/hellopb/hello.proto", "xds:///hello"}, header...)...)
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(dir, "node_modules"))
	c := startCommand(t, name, addr, cmd)
	return c
}

// TestNodeClient: Node's @grpc/grpc-js-xds follows the registry through
// the xDS server, and a registry outage costs it no call.
func TestNodeClient(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	xreg := store.Open()
	t.Cleanup(func() { xreg.Close() })
	startHello(t, reg, "a")
	b := startHello(t, reg, "b")
	srv, addr, _ := startXDS(t, xreg, "127.0.0.1:0")
	c := startNode(t, "node", addr)
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
