package consul_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// TestRPCsFlowThroughAgentRestart: real gRPC servers registered with
// heartbeats that mirror their health, a client dialling the consul://
// target; the agent restarts, and not one RPC fails. Afterwards the
// client follows a new registration, so it converged.
func TestRPCsFlowThroughAgentRestart(t *testing.T) {
	agent := testenv.StartConsulWith(t, testenv.ConsulOptions{Server: true})
	svc := registrytest.ServiceName(t)
	var servers []*testenv.HelloServer
	var insts []registry.Instance
	register := func(name string) {
		srv := testenv.StartHello(t, name)
		r := newReg(t, agent.HTTPAddr(), consul.WithTTLCheck(3*time.Second), consul.WithHealth(consul.GRPCHealth(srv.Health)), fast)
		inst := registry.Instance{ID: name, Service: svc, Address: srv.Addr}
		if err := r.Register(ctxT(t, 10*time.Second), inst); err != nil {
			t.Fatalf("Register(%s) = %v", name, err)
		}
		servers, insts = append(servers, srv), append(insts, inst)
	}
	register("s1")
	register("s2")

	cache := resolver.NewCache()
	defer cache.Close()
	conn, err := cache.NewClient("consul://"+agent.HTTPAddr()+"/"+svc, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatalf("NewClient = %v", err)
	}
	defer conn.Close()
	hc := hellopb.NewHelloServiceClient(conn)

	var (
		mu       sync.Mutex
		answered = map[string]int{}
		failures []string
		calls    atomic.Int64
	)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			resp, err := hc.SayHello(rctx, &hellopb.HelloRequest{Name: "t"}, grpc.WaitForReady(true))
			cancel()
			if ctx.Err() != nil {
				return
			}
			calls.Add(1)
			mu.Lock()
			if err != nil {
				failures = append(failures, err.Error())
			} else {
				answered[resp.GetMessage()[strings.LastIndex(resp.GetMessage(), " ")+1:]]++
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	})
	defer func() { stop(); wg.Wait() }()
	waitAnswered := func(name string) {
		t.Helper()
		wait.For(t, 20*time.Second, name+" to answer an RPC", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return answered[name] > 0
		})
	}
	waitAnswered("s1")
	waitAnswered("s2")

	before := calls.Load()
	agent.Restart(t)
	// Keep calling through the restart and the reconnection.
	w := mustWatch(t, newReg(t, agent.HTTPAddr(), fast), svc)
	nextUntil(t, w, 20*time.Second, "s1 and s2 after the restart", func(in []registry.Instance) bool { return sameIDs(in, "s1", "s2") })
	register("s3")
	waitAnswered("s3")
	stop()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Errorf("%d of %d RPCs failed across the agent restart; first: %s", len(failures), calls.Load(), failures[0])
	}
	if calls.Load()-before < 10 {
		t.Errorf("only %d RPCs during the restart window", calls.Load()-before)
	}
	t.Logf("%d RPCs, %d during and after the restart, answered by %v", calls.Load(), calls.Load()-before, answered)
}
