package etcd_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
)

// The registrant is this test binary re-executed as a child, so that the
// test can freeze a whole registering process with SIGSTOP: its keepalive
// goroutines stop with it, exactly as in a stuck or swapped-out server.
const (
	registrantEnv     = "WAYFINDER_ETCD_TEST_REGISTRANT"
	registrantService = "WAYFINDER_ETCD_TEST_SERVICE"
)

// runRegistrant registers one instance through an etcd URL with no host
// (so endpoints come from ETCDCTL_ENDPOINTS), says so on stdout, and
// stays registered until stdin closes.
func runRegistrant() int {
	r, err := registry.Open(context.Background(), "etcd://?ttl=2s")
	if err != nil {
		fmt.Fprintln(os.Stderr, "registrant:", err)
		return 1
	}
	defer r.Close()
	svc := os.Getenv(registrantService)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.Register(ctx, inst(svc, 1)); err != nil {
		fmt.Fprintln(os.Stderr, "registrant:", err)
		return 1
	}
	fmt.Println("registered")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

func TestRegistrantPausedPastTTL(t *testing.T) {
	srv := testenv.StartEtcd(t)
	svc := svcName(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		registrantEnv+"=1",
		registrantService+"="+svc,
		etcd.EnvEndpoints+"="+srv.Endpoint())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		<-exited
	})
	select {
	case l := <-lines:
		if strings.TrimSpace(l) != "registered" {
			t.Fatalf("registrant said %q", l)
		}
	case err := <-exited:
		t.Fatalf("registrant exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("registrant did not register within 30s")
	}

	cli := newRegistry(t, []string{srv.Endpoint()})
	w, err := cli.Watch(ctxFor(t, time.Second), svc)
	if err != nil {
		t.Fatal(err)
	}
	results := follow(t, w)
	a := inst(svc, 1)
	await(t, results, 10*time.Second, "the registrant", has(a))

	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	await(t, results, 15*time.Second, "the registrant gone after its TTL", has())
	t.Logf("frozen registrant gone after %v", time.Since(stopped))
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	await(t, results, 15*time.Second, "the registrant back after SIGCONT", has(a))
	t.Logf("resumed registrant back after %v", time.Since(resumed))
	stdin.Close()
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("registrant exit = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("registrant did not exit after stdin closed")
	}
}
