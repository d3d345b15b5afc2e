package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// The test binary doubles as a HelloService server process, so that the
// kill test can SIGKILL a real process.
func init() {
	if name := os.Getenv("WAYFINDER_TEST_CHILD_SERVER"); name != "" {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		s := grpc.NewServer()
		hellopb.RegisterHelloServiceServer(s, &hello.Server{Name: name})
		fmt.Println("ADDR", lis.Addr().String())
		_ = s.Serve(lis)
		os.Exit(0)
	}
}

func startChild(t *testing.T, name string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WAYFINDER_TEST_CHILD_SERVER="+name)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		t.Fatalf("child server said %q, %v", line, err)
	}
	return cmd, strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))
}

// killUnderLoad SIGKILLs one of three server processes while a client
// calls steadily, and returns the calls and failures after the kill, and
// how many calls were in flight when it happened.
func killUnderLoad(t *testing.T, serviceConfig string) (inFlightAtKill, failures, callsAfter, routedToDead int64) {
	store := memory.NewStore()
	reg := store.Open()
	var victim *exec.Cmd
	for i := range 3 {
		cmd, addr := startChild(t, fmt.Sprintf("proc-%d", i))
		if i == 0 {
			victim = cmd
		}
		if err := reg.Register(t.Context(), registry.Instance{ID: fmt.Sprintf("proc-%d", i), Service: "hello", Address: addr}); err != nil {
			t.Fatal(err)
		}
	}
	cache := resolver.NewCache(resolver.WithLinger(0))
	defer cache.Close()
	cc, err := grpc.NewClient("wayfinder:///hello", grpc.WithResolvers(resolver.NewBuilder(reg, resolver.WithCache(cache))),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(serviceConfig))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := hellopb.NewHelloServiceClient(cc)
	if _, err := client.SayHello(t.Context(), &hellopb.HelloRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatal(err)
	}
	var (
		inFlight, fails, after, dead atomic.Int64
		killed                       atomic.Bool
		goneAt                       atomic.Int64 // UnixNano once the victim has exited
	)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				inFlight.Add(1)
				started := time.Now().UnixNano()
				cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := client.SayHello(cctx, &hellopb.HelloRequest{})
				ccancel()
				inFlight.Add(-1)
				if !killed.Load() {
					continue
				}
				after.Add(1)
				if err != nil {
					fails.Add(1)
				} else if g := goneAt.Load(); g != 0 && started > g && strings.HasSuffix(resp.GetMessage(), "proc-0") {
					dead.Add(1) // a call begun after the process was gone reached it
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond) // steady load before the kill
	killed.Store(true)
	victim.Process.Kill()
	victim.Wait()
	goneAt.Store(time.Now().UnixNano())
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	// Every worker can have at most one call in flight.
	return 4, fails.Load(), after.Load(), dead.Load()
}

func TestKillServerProcessUnderLoad(t *testing.T) {
	inFlight, failures, calls, dead := killUnderLoad(t, `{"loadBalancingConfig":[{"round_robin":{}}]}`)
	t.Logf("no retry policy: %d of %d calls after SIGKILL failed (at most %d were in flight); %d answered by the dead process", failures, calls, inFlight, dead)
	if failures > inFlight {
		t.Errorf("%d calls failed after SIGKILL, more than the %d that can have been in flight", failures, inFlight)
	}
	if calls < 50 || dead != 0 {
		t.Errorf("after SIGKILL: %d calls, %d answered by the dead process; want traffic on the others", calls, dead)
	}
}

func TestKillServerProcessUnderLoadWithRetry(t *testing.T) {
	_, failures, calls, _ := killUnderLoad(t, `{"loadBalancingConfig":[{"round_robin":{}}],
		"methodConfig":[{"name":[{"service":"wayfinder.examples.hello.HelloService"}],
		"retryPolicy":{"maxAttempts":3,"initialBackoff":"0.01s","maxBackoff":"0.1s","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]}`)
	t.Logf("retry on UNAVAILABLE: %d of %d calls after SIGKILL failed", failures, calls)
	if failures != 0 {
		t.Errorf("with a retry policy on UNAVAILABLE, %d calls failed after SIGKILL, want 0", failures)
	}
}
