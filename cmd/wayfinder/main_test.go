package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/cctest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/leak"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

func TestMain(m *testing.M) {
	leak.VerifyTestMain(m, func() {
		resolver.DefaultCache().Close()
		if binDir != "" {
			os.RemoveAll(binDir)
		}
	})
}

func wf(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

func startHello(t *testing.T, name string) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	hellopb.RegisterHelloServiceServer(s, &hello.Server{Name: name})
	reflection.Register(s)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func TestRegisterInstancesServicesDeregister(t *testing.T) {
	reg := "mem://cli-basic"
	if out, errOut, code := wf(t, "register", "-once", "-addr", "127.0.0.1:7001", "-id", "a", "-zone", "z1", "-weight", "5",
		"-tags", "canary,blue", "-meta", "owner=team", reg+"/hello"); code != 0 || !strings.Contains(out, "registered a 127.0.0.1:7001") {
		t.Fatalf("register = %d %q %q", code, out, errOut)
	}
	if _, errOut, code := wf(t, "register", "-once", "-addr", "127.0.0.1:7002", "-id", "b", reg+"/hello"); code != 0 {
		t.Fatalf("register b = %d %q", code, errOut)
	}
	out, _, code := wf(t, "services", reg)
	if code != 0 || !regexpLine(out, "hello", "2") {
		t.Fatalf("services = %d %q; want a line 'hello 2'", code, out)
	}
	out, _, code = wf(t, "instances", reg+"/hello")
	if code != 0 || !strings.Contains(out, "canary,blue") || !strings.Contains(out, "owner=team") || !strings.Contains(out, "127.0.0.1:7002") {
		t.Fatalf("instances = %d %q", code, out)
	}
	out, _, code = wf(t, "instances", "-o", "json", reg+"/hello")
	var got []jsonInstance
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got) != 2 || got[0].Weight != 5 || got[1].Weight != registry.DefaultWeight {
		t.Fatalf("instances -o json = %d %q (%v); want 2 instances with weights 5 and the default", code, out, err)
	}
	if _, errOut, code := wf(t, "deregister", "-id", "a", reg+"/hello"); code != 0 {
		t.Fatalf("deregister = %d %q", code, errOut)
	}
	out, _, _ = wf(t, "instances", "-o", "json", reg+"/hello")
	if strings.Contains(out, `"a"`) {
		t.Fatalf("after deregister, instances = %q", out)
	}
}

func regexpLine(out, svc, count string) bool {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == svc && f[1] == count {
			return true
		}
	}
	return false
}

func TestRegisterHoldsUntilInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var out cctest.SyncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"register", "-addr", "127.0.0.1:7003", "-id", "held", "mem://cli-hold/hello"}, &out, &out)
	}()
	r := memory.Named("cli-hold").Open()
	wait.For(t, 10*time.Second, "the registration", func() bool { insts, _ := r.Lookup(t.Context(), "hello"); return len(insts) == 1 })
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("register exited %d: %s", code, out.String())
	}
	if insts, _ := r.Lookup(t.Context(), "hello"); len(insts) != 0 {
		t.Fatalf("after interrupt, instance still registered")
	}
}

func TestWatchShowsChanges(t *testing.T) {
	r := memory.Named("cli-watch").Open()
	ctx, cancel := context.WithCancel(t.Context())
	var out cctest.SyncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"watch", "mem://cli-watch/hello"}, &out, &out) }()
	wait.For(t, 10*time.Second, "the first set", func() bool { return strings.Contains(out.String(), "0 instance(s)") })
	inst := registry.Instance{ID: "w1", Service: "hello", Address: "127.0.0.1:7010"}
	r.Register(t.Context(), inst)
	wait.For(t, 10*time.Second, "the addition", func() bool { return strings.Contains(out.String(), "+ w1 127.0.0.1:7010") })
	inst.Weight = 4
	r.Register(t.Context(), inst)
	wait.For(t, 10*time.Second, "the change", func() bool { return strings.Contains(out.String(), "~ w1 127.0.0.1:7010 weight=4 (") })
	if !strings.Contains(out.String(), "after its registration)") {
		t.Errorf("watch shows no propagation delay:\n%s", out.String())
	}
	r.Deregister(t.Context(), inst)
	wait.For(t, 10*time.Second, "the removal", func() bool { return strings.Contains(out.String(), "- w1") })
	memory.Named("cli-watch").SetOutage(context.DeadlineExceeded)
	wait.For(t, 10*time.Second, "the error", func() bool { return strings.Contains(out.String(), "error (last set kept; retrying)") })
	memory.Named("cli-watch").SetOutage(nil)
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("watch exited %d: %s", code, out.String())
	}
	// Each set's line ends with the store's change counter: one more for
	// each of the addition, the change and the removal.
	idx := watchIndexes(t, out.String())
	if len(idx) < 4 || idx[1] != idx[0]+1 || idx[2] != idx[0]+2 || idx[3] != idx[0]+3 {
		t.Errorf("watch indexes = %v, want 4 consecutive ones:\n%s", idx, out.String())
	}
}

// watchIndexes returns the index=N of watch's set lines, in order.
func watchIndexes(t *testing.T, out string) []uint64 {
	t.Helper()
	var idx []uint64
	for _, m := range regexp.MustCompile(`(?m) instance\(s\) index=(\d+)$`).FindAllStringSubmatch(out, -1) {
		n, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		idx = append(idx, n)
	}
	return idx
}

func TestCall(t *testing.T) {
	r := memory.Named("cli-call").Open()
	for _, name := range []string{"x", "y"} {
		if err := r.Register(t.Context(), registry.Instance{ID: name, Service: "hello", Address: startHello(t, name)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, extra := range [][]string{nil, {"-reflect"}} {
		args := append([]string{"call", "-n", "4", "-d", `{"name":"cli","num1":20,"num2":22}`}, extra...)
		args = append(args, "mem://cli-call/hello", "SayHello")
		out, errOut, code := wf(t, args...)
		// Each answer names the registered instance that gave it. (Which
		// ones answer depends on which connections are ready first.)
		named := strings.Count(out, "answered by x (") + strings.Count(out, "answered by y (")
		if code != 0 || strings.Count(out, `"result":42`) != 4 || named != 4 {
			t.Fatalf("call %v = %d %q %q; want 4 answers of 42, each naming instance x or y", extra, code, out, errOut)
		}
	}
	if _, errOut, code := wf(t, "call", "mem://cli-call/hello", "NoSuchMethod"); code != 1 || !strings.Contains(errOut, "NoSuchMethod") {
		t.Fatalf("call of an unknown method = %d %q", code, errOut)
	}
	if _, errOut, code := wf(t, "call", "-d", "{not json", "mem://cli-call/hello", "SayHello"); code != 2 || !strings.Contains(errOut, "-d") {
		t.Fatalf("call with bad JSON = %d %q", code, errOut)
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		args []string
		code int
		says string
	}{
		{nil, 2, "usage"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"services"}, 2, "want 1 argument"},
		{[]string{"services", "nosuch://x"}, 1, "unknown scheme"},
		{[]string{"instances", "-o", "xml", "mem:///hello"}, 2, "table or json"},
		{[]string{"instances", "mem://"}, 1, "names no service"},
		{[]string{"instances", "mem:///hello?x=1"}, 1, "unknown parameter"},
		{[]string{"frobnicate"}, 2, "commands: services, instances, watch, register, deregister, call, diff, demo"},
		{[]string{"register", "-addr", "0.0.0.0:1", "mem:///hello"}, 1, "unspecified"},
		{[]string{"register", "-addr", "127.0.0.1:1", "-meta", "novalue", "mem:///hello"}, 2, "key=value"},
		{[]string{"deregister", "mem:///hello"}, 2, "-id is required"},
		{[]string{"call", "mem:///hello"}, 2, "want 2 argument"},
		{[]string{"demo", "-servers", "1"}, 1, "servers"},
		{[]string{"instances", "127.0.0.1:8500/hello"}, 1, "hint: a registry URL is mem://"},
		{[]string{"instances", "http://127.0.0.1:8500/hello"}, 1, "unknown scheme \"http\"; registered: consul, etcd, mem"},
		{[]string{"instances", "mem:///hello"}, 1, "a mem:// registry lives inside one process"},
		{[]string{"instances", "mem:///hello", "-o", "yaml"}, 2, "want table or json"},
		{[]string{"register", "mem:///hello"}, 2, "-addr is required"},
		{[]string{"deregister", "-id", "x", "mem:///hello"}, 1, "nothing deregistered"},
		{[]string{"call", "-policy", "nosuch", "mem:///hello", "SayHello"}, 2, "known: pick_first, round_robin, wayfinder_"},
		{[]string{"call", "mem:///hello", "SayHello"}, 1, `service "hello" has no instances at mem://`},
		{[]string{"call", "-timeout", "0s", "mem:///hello", "SayHello"}, 2, "-timeout must be positive"},
		{[]string{"register", "-timeout", "0s", "-addr", "127.0.0.1:1", "mem:///hello"}, 2, "-timeout must be positive"},
	}
	for _, tc := range tests {
		_, errOut, code := wf(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.says) {
			t.Errorf("wayfinder %q = exit %d, %q; want exit %d mentioning %q", tc.args, code, errOut, tc.code, tc.says)
		}
	}
}

func TestDemoCommand(t *testing.T) {
	out, errOut, code := wf(t, "demo", "-registry", "mem://cli-demo", "-duration", "2500ms", "-fault-interval", "700ms")
	if code != 0 || !strings.Contains(out, "RESULT: PASS") {
		t.Fatalf("demo = %d\n%s\n%s", code, out, errOut)
	}
}

func TestHelpHasExamples(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"-h"}} {
		out, _, code := wf(t, args...)
		if code != 0 || !strings.Contains(out, "examples:") || !strings.Contains(out, "CONSUL_HTTP_ADDR") {
			t.Errorf("wayfinder %s = exit %d, %q; want exit 0 and usage with examples and environment on stdout", args[0], code, out)
		}
	}
	for _, c := range commands() {
		for _, args := range [][]string{{c.name, "-h"}, {c.name, "--help"}, {"help", c.name}} {
			out, errOut, code := wf(t, args...)
			if code != 0 || !strings.Contains(out, "usage: wayfinder "+c.name) || !strings.Contains(out, "examples:\n  wayfinder "+c.name) {
				t.Errorf("wayfinder %q = exit %d, %q %q; want exit 0 and usage with examples of %s on stdout", args, code, out, errOut, c.name)
			}
		}
	}
}

// The tests below run the built binary, as a user would, against real
// Consul and etcd servers.

var (
	binOnce sync.Once
	binDir  string // removed by TestMain
	binErr  error
)

// binary builds the wayfinder command once per test run.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "wayfinder-cli-test"); binErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "wayfinder"), ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "wayfinder")
}

// cli runs the built binary with a clean environment: none of the
// user's CONSUL_* or ETCDCTL_* variables, plus env.
type cli struct {
	t   *testing.T
	bin string
	env []string
}

func newCLI(t *testing.T, env ...string) cli {
	return cli{t, binary(t), env}
}

func (c cli) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CONSUL_") && !strings.HasPrefix(kv, "ETCDCTL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, c.env...)
	return cmd
}

// run runs the binary to its end.
func (c cli) run(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := c.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		c.t.Fatalf("wayfinder %q: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// proc is a binary running in the background (watch, register).
type proc struct {
	cmd      *exec.Cmd
	out, err cctest.SyncBuffer
	done     chan struct{}
}

func (c cli) start(args ...string) *proc {
	c.t.Helper()
	p := &proc{cmd: c.command(context.Background(), args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.err
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	c.t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	return p
}

// interrupt sends SIGINT, as Ctrl-C does, and returns the exit status.
func (p *proc) interrupt(t *testing.T) int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%q did not exit on SIGINT; output: %s %s", p.cmd.Args, p.out.String(), p.err.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

func TestBinaryConsul(t *testing.T) {
	t.Parallel()
	a := testenv.StartConsul(t)
	testBinary(t, "consul://"+a.HTTPAddr(), "CONSUL_HTTP_ADDR="+a.HTTPAddr(), "consul://",
		fmt.Sprintf("consul://127.0.0.1:%d", testenv.FreePort(t)), "nothing listens at")
}

func TestBinaryEtcd(t *testing.T) {
	t.Parallel()
	m := testenv.StartEtcd(t)
	testBinary(t, "etcd://"+m.Endpoint(), "ETCDCTL_ENDPOINTS="+m.Endpoint(), "etcd://",
		fmt.Sprintf("etcd://127.0.0.1:%d?timeout=1s", testenv.FreePort(t)), "nothing listens at")
}

// watchLine is an event line of watch: local time, delay, service.
var watchLine = regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d{3} +\+\d+\.\d{3}s hello: 2 instance\(s\) index=\d+$`)

// testBinary drives every command of the binary against the registry at
// url: envURL is a URL with no host that env points at the same
// registry, and deadURL one where nothing listens.
func testBinary(t *testing.T, url, env, envURL, deadURL, deadSays string) {
	c := newCLI(t)
	svc := url + "/hello"

	if out, errOut, code := c.run("services", url); code != 0 || strings.TrimSpace(out) != "SERVICE  INSTANCES" {
		t.Fatalf("services of an empty registry = %d %q %q", code, out, errOut)
	}
	if _, errOut, code := c.run("instances", url+"/nosuch"); code != 1 || !strings.Contains(errOut, `service "nosuch" has no instances`) ||
		!strings.Contains(errOut, "hint: the registry has no services at all") {
		t.Fatalf("instances of a missing service = %d %q", code, errOut)
	}

	watch := c.start("watch", svc)
	wait.For(t, 10*time.Second, "the watch's first set", func() bool { return strings.Contains(watch.out.String(), "hello: 0 instance(s)") })

	regX := c.start("register", "-addr", startHello(t, "x"), "-id", "x", "-zone", "z1", "-weight", "5", "-tags", "canary",
		"-meta", "owner=team", svc)
	regY := c.start("register", "-addr", startHello(t, "y"), "-id", "y", svc)
	wait.For(t, 10*time.Second, "both instances in the watch", func() bool {
		o := watch.out.String()
		return strings.Contains(o, "+ x 127.0.0.1:") && strings.Contains(o, "+ y 127.0.0.1:") && watchLine.MatchString(o)
	})
	if !regexp.MustCompile(`\+ x 127\.0\.0\.1:\d+ weight=5 zone=z1 tags=canary \(\S+ after its registration\)`).MatchString(watch.out.String()) {
		t.Errorf("watch shows no propagation delay of x:\n%s", watch.out.String())
	}
	// The watch can see x before register has heard back from the
	// registry and printed.
	wait.For(t, 10*time.Second, "register's confirmation", func() bool { return strings.Contains(regX.out.String(), "registered x") })
	if o := regX.out.String(); !regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} registered x 127\.0\.0\.1:\d+ weight=5 zone=z1 tags=canary\n$`).MatchString(o) {
		t.Errorf("register printed %q", o)
	}

	out, errOut, code := c.run("services", url)
	if code != 0 || !regexpLine(out, "hello", "2") {
		t.Errorf("services = %d %q %q; want a line 'hello 2'", code, out, errOut)
	}
	out, errOut, code = newCLI(t, env).run("services", envURL)
	if code != 0 || !regexpLine(out, "hello", "2") {
		t.Errorf("%s services %s = %d %q %q; want a line 'hello 2'", env, envURL, code, out, errOut)
	}
	out, _, code = c.run("instances", svc)
	if code != 0 || !regexp.MustCompile(`(?m)^x +127\.0\.0\.1:\d+ +- +z1 +5 +canary +owner=team$`).MatchString(out) {
		t.Errorf("instances = %d %q", code, out)
	}
	out, _, code = c.run("instances", svc, "-o", "json") // flags may follow the target
	var got []jsonInstance
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got) != 2 || got[0].ID != "x" || got[0].Weight != 5 ||
		got[0].Metadata["owner"] != "team" || got[1].Weight != registry.DefaultWeight || got[0].Registered.IsZero() {
		t.Errorf("instances -o json = %d %q (%v)", code, out, err)
	}

	for _, extra := range [][]string{nil, {"-reflect"}} {
		args := append([]string{"call", "-n", "4", "-d", `{"name":"cli","num1":20,"num2":22}`}, extra...)
		out, errOut, code := c.run(append(args, svc, "SayHello")...)
		named := strings.Count(out, "answered by x (127.0.0.1:") + strings.Count(out, "answered by y (127.0.0.1:")
		if code != 0 || strings.Count(out, `"result":42`) != 4 || named != 4 {
			t.Errorf("call %v = %d %q %q; want 4 answers of 42, each naming instance x or y", extra, code, out, errOut)
		}
	}
	if _, errOut, code := c.run("call", svc, "NoSuchMethod", "-reflect"); code != 1 || !strings.Contains(errOut, `no method "NoSuchMethod"`) ||
		!strings.Contains(errOut, "hint: the server offers: wayfinder.examples.hello.HelloService/SayHello") {
		t.Errorf("call of an unknown method = %d %q", code, errOut)
	}

	// deregister checks the ID, then removes a -once registration.
	if _, errOut, code := c.run("deregister", "-id", "nosuch", svc); code != 1 || !strings.Contains(errOut, "nothing deregistered") ||
		!strings.Contains(errOut, "its instances: x, y") {
		t.Errorf("deregister of a missing ID = %d %q", code, errOut)
	}
	// z is a live server: the registry's probe of an address where
	// nothing listens turns it critical, and deregister (without -force)
	// would rightly not find it among the healthy instances.
	zAddr := startHello(t, "z")
	if out, errOut, code := c.run("register", "-once", "-addr", zAddr, "-id", "z", svc); code != 0 || !strings.Contains(out, "registered z") {
		t.Fatalf("register -once = %d %q %q", code, out, errOut)
	}
	wait.For(t, 10*time.Second, "z in the watch", func() bool { return strings.Contains(watch.out.String(), "+ z "+zAddr) })
	if out, errOut, code := c.run("deregister", "-id", "z", svc); code != 0 || !strings.Contains(out, "deregistered hello/z") {
		t.Errorf("deregister = %d %q %q", code, out, errOut)
	}
	wait.For(t, 10*time.Second, "z's removal in the watch", func() bool { return strings.Contains(watch.out.String(), "- z "+zAddr) })

	// Ctrl-C deregisters and exits 0.
	for _, p := range []*proc{regX, regY} {
		if code := p.interrupt(t); code != 0 || !strings.Contains(p.out.String(), "deregistered") {
			t.Errorf("register after SIGINT = %d %q %q", code, p.out.String(), p.err.String())
		}
	}
	wait.For(t, 10*time.Second, "the removals in the watch", func() bool {
		o := watch.out.String()
		return strings.Contains(o, "- x 127.0.0.1:") && strings.Contains(o, "- y 127.0.0.1:")
	})
	if code := watch.interrupt(t); code != 0 {
		t.Errorf("watch after SIGINT = %d %q", code, watch.err.String())
	}
	// Every set line carries the registry's index (Consul's
	// X-Consul-Index, etcd's revision), and changes move it on (a set
	// repeated after an error may repeat its index).
	o := watch.out.String()
	idx := watchIndexes(t, o)
	// At least 5 sets: empty, {x, y} (their two registrations may arrive
	// as one update), with z, without z, empty again (x and y may leave
	// together).
	if sets := strings.Count(o, " instance(s)"); len(idx) != sets || sets < 5 {
		t.Errorf("watch printed %d indexes for %d sets, want one per set (at least 5):\n%s", len(idx), sets, o)
	} else if idx[len(idx)-1] <= idx[0] {
		t.Errorf("watch index went from %d to %d across every change:\n%s", idx[0], idx[len(idx)-1], o)
	}
	for i := 1; i < len(idx); i++ {
		if idx[i] < idx[i-1] {
			t.Errorf("watch index went back from %d to %d:\n%s", idx[i-1], idx[i], o)
			break
		}
	}
	if _, errOut, code := c.run("call", svc, "SayHello"); code != 1 || !strings.Contains(errOut, `service "hello" has no instances`) {
		t.Errorf("call of a service with no instances = %d %q", code, errOut)
	}

	// A registry that does not answer.
	deadTarget := deadURL + "/hello"
	if base, query, ok := strings.Cut(deadURL, "?"); ok {
		deadTarget = base + "/hello?" + query
	}
	for _, args := range [][]string{{"services", deadURL}, {"instances", deadTarget}, {"call", deadTarget, "SayHello"}} {
		_, errOut, code := c.run(args...)
		// The error is registry.ErrUnavailable's text, or a
		// registry.UnavailableError's, which says the connection was refused.
		unavailable := strings.Contains(errOut, "registry: unavailable") ||
			strings.Contains(errOut, "connection refused (is the registry running at that address?)")
		if code != 1 || !unavailable || !strings.Contains(errOut, "hint: "+deadSays) {
			t.Errorf("wayfinder %q = %d %q", args, code, errOut)
		}
	}
}

type fixedIndex string

func (fixedIndex) Next(context.Context) ([]registry.Instance, error) { return nil, nil }
func (fixedIndex) Close() error                                      { return nil }
func (f fixedIndex) Index() string                                   { return string(f) }

// TestIndexSuffix: an index with spaces or '=' (Consul with several
// datacenters) is quoted, so that the line still reads as key=value.
func TestIndexSuffix(t *testing.T) {
	for idx, want := range map[string]string{
		"":               "",
		"1234":           " index=1234",
		"dc1=120 dc2=87": ` index="dc1=120 dc2=87"`,
	} {
		if got := indexSuffix(fixedIndex(idx)); got != want {
			t.Errorf("indexSuffix(%q) = %q, want %q", idx, got, want)
		}
	}
	if got := indexSuffix(nil); got != "" {
		t.Errorf("indexSuffix(nil) = %q, want \"\"", got)
	}
}

// lockedBuffer is a bytes.Buffer safe to read while a command writes it.
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

// TestRegisterRetriesUntilTimeout: register -timeout waits for a down
// agent, as its help says, saying so once, and registers when the agent
// comes back within the deadline.
func TestRegisterRetriesUntilTimeout(t *testing.T) {
	a := testenv.StartConsul(t)
	a.Stop()
	var out, errOut lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"register", "-once", "-timeout", "60s", "-id", "late", "-addr", startHello(t, "late"),
			"consul://" + a.HTTPAddr() + "/hello"}, &out, &errOut)
	}()
	wait.For(t, 10*time.Second, "register to say it is retrying", func() bool {
		select {
		case code := <-done:
			t.Fatalf("register with the agent down exited at once: %d %q %q", code, out.String(), errOut.String())
		default:
		}
		return strings.Contains(out.String(), "retrying")
	})
	a.Start(t)
	select {
	case code := <-done:
		if code != 0 || !strings.Contains(out.String(), "registered late") {
			t.Fatalf("register once the agent was back = %d %q %q", code, out.String(), errOut.String())
		}
		if n := strings.Count(out.String(), "retrying"); n != 1 {
			t.Errorf("register said it was retrying %d times, want once:\n%s", n, out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("register did not finish within its 60s -timeout; out %q", out.String())
	}
}

// TestHintWhenAgentAnswers: an agent that answers with an error or with
// garbage is not "no agent answered"; the hint says it answered.
func TestHintWhenAgentAnswers(t *testing.T) {
	for name, h := range map[string]http.HandlerFunc{
		"500": func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "rpc error", 500) },
		"bad json": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Consul-Index", "5")
			fmt.Fprint(w, "<html>")
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			_, errOut, code := wf(t, "instances", "consul://"+srv.Listener.Addr().String()+"/hello")
			if code != 1 || strings.Contains(errOut, "no Consul agent answered") || !strings.Contains(errOut, "answered, but") {
				t.Errorf("instances against an agent answering %s = exit %d, %q; want a hint that it answered", name, code, errOut)
			}
		})
	}
}
