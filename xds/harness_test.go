package xds_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/leak"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/server"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

// goClient is the path of the grpc-go xDS client (internal/xdsclient),
// built once by TestMain.
var goClient string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wayfinder-xds-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	goClient = filepath.Join(dir, "xdsclient")
	// go test puts its own go first in PATH.
	build := exec.Command("go", "build", "-o", goClient, "./internal/xdsclient")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the grpc-go xDS client: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	leak.VerifyTestMain(m, func() { os.RemoveAll(dir) })
}

// startXDS serves an xDS server over d on addr ("127.0.0.1:0" for any
// port) until the test ends, or until stop, and returns it and its
// address.
func startXDS(t testing.TB, d registry.Discovery, addr string, opts ...xds.Option) (s *xds.Server, _ string, stop func()) {
	t.Helper()
	var lis net.Listener
	var err error
	// A restarted server takes its predecessor's port: wait until the
	// kernel lets it go.
	wait.For(t, 10*time.Second, "listening on "+addr, func() bool {
		lis, err = net.Listen("tcp", addr)
		return err == nil
	})
	s, err = xds.New(d, opts...)
	if err != nil {
		lis.Close()
		t.Fatalf("xds.New() = %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		if err := s.Close(); err != nil {
			t.Errorf("xds Server.Close() = %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("xds Server.Serve() = %v", err)
		}
	}
	t.Cleanup(stop)
	return s, lis.Addr().String(), stop
}

// startHello starts a HelloService server named name on 127.0.0.1,
// registered as service "hello" in reg, until the test ends.
func startHello(t testing.TB, reg registry.Registrar, name string, opts ...server.Option) *server.Server {
	t.Helper()
	srv, err := server.New(reg, "hello", append([]server.Option{server.WithID(name)}, opts...)...)
	if err != nil {
		t.Fatalf("server.New() = %v", err)
	}
	hellopb.RegisterHelloServiceServer(srv.GRPC(), &hello.Server{Name: name})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("Start(%s) = %v", name, err)
	}
	t.Cleanup(func() {
		// A server started after the clients is stopped before their own
		// cleanups run: stop them first, so that no call of theirs meets
		// a server the test is tearing down.
		stopClients(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("Stop(%s) = %v", name, err)
		}
	})
	return srv
}

// client is an xDS client process calling xds:///hello in a loop.
type client struct {
	name   string
	cmd    *exec.Cmd
	stdin  interface{ Close() error }
	stderr lockedBuffer
	read   chan struct{} // closed when stdout is read to its end

	mu    sync.Mutex
	picks []string    // the server of each successful call, in order
	at    []time.Time // when each of picks was read
	fails []string    // each failed call
	after int         // len(picks) when the last failed call was read
}

// startClient starts the grpc-go client with a bootstrap that names the
// xDS server at addr; with a header "name=value", every call carries it.
// It is stopped, and its failed calls checked, when the test ends.
func startClient(t testing.TB, name, addr string, header ...string) *client {
	t.Helper()
	args := []string{"-target", "xds:///hello"}
	for _, h := range header {
		args = append(args, "-header", h)
	}
	return startCommand(t, name, addr, exec.Command(goClient, args...))
}

func startCommand(t testing.TB, name, addr string, cmd *exec.Cmd) *client {
	t.Helper()
	return startBootstrap(t, name, xds.BootstrapConfig{Server: addr}, cmd, false)
}

// startBootstrap starts cmd with the bootstrap of bc (its NodeID is
// name). A client that wantFail is expected to fail every call: its
// failures are not errors.
func startBootstrap(t testing.TB, name string, bc xds.BootstrapConfig, cmd *exec.Cmd, wantFail bool) *client {
	t.Helper()
	bc.NodeID = name
	boot, err := xds.Bootstrap(bc)
	if err != nil {
		t.Fatalf("Bootstrap() = %v", err)
	}
	c := &client{name: name, cmd: cmd, read: make(chan struct{})}
	clientsMu.Lock()
	clients[t] = append(clients[t], c)
	clientsMu.Unlock()
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GRPC_XDS_BOOTSTRAP") })
	cmd.Env = append(env, "GRPC_XDS_BOOTSTRAP_CONFIG="+string(boot))
	cmd.Stderr = &c.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.stdin = stdin
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		defer close(c.read)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			c.mu.Lock()
			if from, ok := strings.CutPrefix(line, "ok "); ok {
				c.picks = append(c.picks, from)
				c.at = append(c.at, time.Now())
			} else {
				c.fails = append(c.fails, line)
				c.after = len(c.picks)
			}
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		c.stop(t)
		clientsMu.Lock()
		clients[t] = slices.DeleteFunc(clients[t], func(o *client) bool { return o == c })
		if len(clients[t]) == 0 {
			delete(clients, t)
		}
		clientsMu.Unlock()
		if f := c.failures(); len(f) > 0 && !wantFail {
			t.Errorf("%s: %d failed calls, the first: %s", name, len(f), f[0])
		}
	})
	return c
}

// clients are the client processes each test has running.
var (
	clientsMu sync.Mutex
	clients   = map[testing.TB][]*client{}
)

// stopClients stops every client process of t (their failed calls are
// still checked by their own cleanups).
func stopClients(t testing.TB) {
	clientsMu.Lock()
	cs := slices.Clone(clients[t])
	clientsMu.Unlock()
	for _, c := range cs {
		c.stop(t)
	}
}

// stop ends the client and waits for it.
func (c *client) stop(t testing.TB) {
	if c.stdin == nil {
		return
	}
	c.stdin.Close()
	c.stdin = nil
	select {
	case <-c.read:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-c.read
	}
	if err := c.cmd.Wait(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) || !exit.Exited() || exit.ExitCode() != 0 {
			t.Errorf("%s: %v\n%s", c.name, err, c.stderr.String())
		}
	}
}

// exited reports whether the client's output has ended: it exited.
func (c *client) exited() bool {
	select {
	case <-c.read:
		return true
	default:
		return false
	}
}

func (c *client) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.picks)
}

func (c *client) picksSince(mark int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.picks[mark:])
}

// firstPick returns when the first call after mark reached name.
func (c *client) firstPick(mark int, name string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := mark; i < len(c.picks); i++ {
		if c.picks[i] == name {
			return c.at[i], true
		}
	}
	return time.Time{}, false
}

func (c *client) failures() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.fails)
}

// waitPicks waits until the calls after mark have reached every one of
// names.
func (c *client) waitPicks(t testing.TB, mark int, names ...string) {
	t.Helper()
	ok := wait.Until(60*time.Second, func() bool {
		if c.exited() {
			return true
		}
		got := c.picksSince(mark)
		for _, n := range names {
			if !slices.Contains(got, n) {
				return false
			}
		}
		return true
	})
	if !ok || c.exited() {
		t.Fatalf("%s: calls after #%d reached %v, want all of %v; failures %v; stderr:\n%s", c.name, mark, counts(c.picksSince(mark)), names, c.failures(), c.stderr.String())
	}
}

// waitOnly waits until the last n calls reached only names.
func (c *client) waitOnly(t testing.TB, n int, names ...string) {
	t.Helper()
	mark := c.calls()
	ok := wait.Until(60*time.Second, func() bool {
		got := c.picksSince(mark)
		if len(got) < n {
			return false
		}
		for _, p := range got[len(got)-n:] {
			if !slices.Contains(names, p) {
				return false
			}
		}
		return true
	})
	if !ok {
		got := c.picksSince(mark)
		t.Fatalf("%s: the last %d calls reached %v, want only %v", c.name, n, counts(got[max(0, len(got)-n):]), names)
	}
}

// waitCalls waits for n more successful calls after mark. It asserts
// no speed: on a loaded machine a client may take minutes for thousands
// of calls. It fails when the client exits, or makes no successful call
// for stall.
func (c *client) waitCalls(t testing.TB, mark, n int) {
	t.Helper()
	start := time.Now()
	for {
		got := c.calls()
		if got >= mark+n {
			t.Logf("%s: %d calls in %v", c.name, n, time.Since(start).Round(time.Millisecond))
			return
		}
		if c.exited() || !wait.Until(stall, func() bool { return c.calls() != got || c.exited() }) {
			t.Fatalf("%s: %d of %d calls after #%d, then none for %v or the client exited (exited: %v); failures %v; stderr:\n%s",
				c.name, got-mark, n, mark, stall, c.exited(), c.failures(), c.stderr.String())
		}
	}
}

// stall is how long a client may go without a successful call before a
// wait for its calls fails.
const stall = 60 * time.Second

func counts(picks []string) map[string]int {
	m := map[string]int{}
	for _, p := range picks {
		m[p]++
	}
	return m
}

// lockedBuffer is a bytes.Buffer that a child's stderr copier writes
// while a failing test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
