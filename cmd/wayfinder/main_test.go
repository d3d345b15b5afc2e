package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"github.com/wayfinder-rpc/wayfinder/examples/helloworld/hello"
	"github.com/wayfinder-rpc/wayfinder/examples/helloworld/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { resolver.DefaultCache().Close() }))
}

// syncBuffer lets a test read what a running command has printed.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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
	var out syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"register", "-addr", "127.0.0.1:7003", "-id", "held", "mem://cli-hold/hello"}, &out, &out)
	}()
	r := memory.Named("cli-hold").Open()
	waitFor(t, "the registration", func() bool { insts, _ := r.Lookup(t.Context(), "hello"); return len(insts) == 1 })
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("register exited %d: %s", code, out.String())
	}
	if insts, _ := r.Lookup(t.Context(), "hello"); len(insts) != 0 {
		t.Fatalf("after interrupt, instance still registered")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchShowsChanges(t *testing.T) {
	r := memory.Named("cli-watch").Open()
	ctx, cancel := context.WithCancel(t.Context())
	var out syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"watch", "mem://cli-watch/hello"}, &out, &out) }()
	waitFor(t, "the first set", func() bool { return strings.Contains(out.String(), "0 instance(s)") })
	inst := registry.Instance{ID: "w1", Service: "hello", Address: "127.0.0.1:7010"}
	r.Register(t.Context(), inst)
	waitFor(t, "the addition", func() bool { return strings.Contains(out.String(), "+ w1 127.0.0.1:7010") })
	inst.Weight = 4
	r.Register(t.Context(), inst)
	waitFor(t, "the change", func() bool { return strings.Contains(out.String(), "~ w1 127.0.0.1:7010 weight=4") })
	r.Deregister(t.Context(), inst)
	waitFor(t, "the removal", func() bool { return strings.Contains(out.String(), "- w1") })
	memory.Named("cli-watch").SetOutage(context.DeadlineExceeded)
	waitFor(t, "the error", func() bool { return strings.Contains(out.String(), "error (last set kept)") })
	memory.Named("cli-watch").SetOutage(nil)
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("watch exited %d: %s", code, out.String())
	}
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
	if _, errOut, code := wf(t, "call", "-d", "{not json", "mem://cli-call/hello", "SayHello"); code != 1 || !strings.Contains(errOut, "-d") {
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
		{[]string{"register", "-addr", "0.0.0.0:1", "mem:///hello"}, 1, "unspecified"},
		{[]string{"register", "-addr", "127.0.0.1:1", "-meta", "novalue", "mem:///hello"}, 2, "key=value"},
		{[]string{"deregister", "mem:///hello"}, 2, "-id is required"},
		{[]string{"call", "mem:///hello"}, 2, "want 2 argument"},
		{[]string{"demo", "-servers", "1"}, 1, "servers"},
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
