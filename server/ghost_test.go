package server_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/resolver"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// ghostBound is how long a server stopped while its agent was down may
// stay in Consul's passing set once the agent answers again: one probe
// interval and timeout of the native gRPC check, plus 2 s for the
// agent's update, the blocking query and a loaded machine.
const ghostBound = consul.DefaultServerGRPCInterval + consul.DefaultServerGRPCTimeout + 2*time.Second

// TestConsulGhostAfterAgentOutage: a server.Server
// stopped while its agent was down cannot deregister (its Stop gives up
// at the register timeout). When the agent comes back with its data dir
// it restores the instance; the ghost must leave Consul's passing set,
// a watch's set and a client's set within ghostBound of the agent
// answering, and no call may fail after that. Two live servers next to
// it keep the service above the mass-removal guard's threshold, so the
// guard does not (rightly) hold the ghost as a lost instance.
func TestConsulGhostAfterAgentOutage(t *testing.T) {
	agent := testenv.StartConsulWith(t, testenv.ConsulOptions{Server: true})
	const svc = "ghosts"
	ids := []string{"alive-1", "alive-2", "ghost"}
	servers := map[string]*server.Server{}
	for _, id := range ids {
		reg, err := consul.New(agent.HTTPAddr()) // one registry client per server, as separate processes
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { reg.Close() })
		s, err := server.New(reg, svc, server.WithID(id), server.WithListenAddress("127.0.0.1:0"))
		if err != nil {
			t.Fatal(err)
		}
		hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: id})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		waitRegistered(t, s)
		t.Cleanup(func() { s.Stop(context.Background()) })
		servers[id] = s
	}
	reader, err := consul.New(agent.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reader.Close() })
	passing := func() ([]string, error) {
		entries, _, err := reader.Client().Health().Service(svc, "", true, nil)
		if err != nil {
			return nil, err
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Service.ID)
		}
		slices.Sort(got)
		return got, nil
	}
	has := func(ids []string, id string) bool {
		return slices.ContainsFunc(ids, func(s string) bool { return strings.HasSuffix(s, id) })
	}
	wait.For(t, 15*time.Second, "3 instances passing", func() bool { got, _ := passing(); return len(got) == 3 })

	// The registry's own watch, as a client library user would read it.
	w, err := reader.Watch(t.Context(), svc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	var watchMu sync.Mutex
	var watchSet []string
	var watchDone sync.WaitGroup
	watchDone.Go(func() {
		for {
			insts, err := w.Next(context.Background())
			if err != nil {
				if strings.Contains(err.Error(), "closed") {
					return
				}
				continue // outage: the last good set stands
			}
			var got []string
			for _, in := range insts {
				got = append(got, in.ID)
			}
			watchMu.Lock()
			watchSet = got
			watchMu.Unlock()
		}
	})
	t.Cleanup(func() { w.Close(); watchDone.Wait() })
	watchHas := func(id string) bool { watchMu.Lock(); defer watchMu.Unlock(); return has(watchSet, id) }

	// A Wayfinder client with default settings (guard on), calling
	// steadily.
	cache := resolver.NewCache(resolver.WithLinger(0))
	t.Cleanup(func() { cache.Close() })
	cc, err := cache.NewClient("consul://"+agent.HTTPAddr()+"/"+svc, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	clientHas := func(id string) bool {
		for _, wi := range cache.Watches() {
			for _, in := range wi.Instances {
				if in.ID == id {
					return true
				}
			}
		}
		return false
	}
	cc.Connect()
	client := hellopb.NewHelloServiceClient(cc)
	wait.For(t, 15*time.Second, "the client to reach all three", func() bool {
		return clientHas("alive-1") && clientHas("alive-2") && clientHas("ghost") && watchHas("ghost")
	})

	agent.Kill()
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	stopStart := time.Now()
	err = servers["ghost"].Stop(stopCtx)
	cancel()
	if err == nil {
		t.Fatalf("ghost.Stop() with the agent down = nil, want a deregister error")
	}
	t.Logf("ghost.Stop() with the agent down took %v: %v", time.Since(stopStart).Round(10*time.Millisecond), err)

	var calls, fails, late atomic.Int64
	var answeredAt atomic.Int64 // UnixNano, set once the agent answers
	var lastErr atomic.Value
	ctx, stopLoad := context.WithCancel(t.Context())
	var load sync.WaitGroup
	for range 2 {
		load.Go(func() {
			for ctx.Err() == nil {
				started := time.Now()
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := client.SayHello(cctx, &hellopb.HelloRequest{})
				ccancel()
				if ctx.Err() != nil {
					return
				}
				calls.Add(1)
				if err != nil {
					fails.Add(1)
					lastErr.Store(err.Error())
					if a := answeredAt.Load(); a != 0 && started.Sub(time.Unix(0, a)) > ghostBound {
						late.Add(1)
					}
				}
			}
		})
	}

	agent.Start(t)
	answered := time.Now()
	answeredAt.Store(answered.UnixNano())
	var inPassing, inWatch, inClient time.Duration
	wait.For(t, 30*time.Second, "the ghost to leave the passing set, the watch and the client", func() bool {
		now := time.Since(answered)
		if got, err := passing(); err == nil && !has(got, "ghost") && inPassing == 0 {
			inPassing = now
		}
		if !watchHas("ghost") && inWatch == 0 {
			inWatch = now
		}
		if !clientHas("ghost") && inClient == 0 {
			inClient = now
		}
		return inPassing != 0 && inWatch != 0 && inClient != 0
	})
	// Keep calling until both live servers pass again, and 200 calls
	// more, so that a late call to the ghost or its return would show.
	after := calls.Load()
	var back []string
	wait.For(t, 30*time.Second, "alive-1 and alive-2 passing and 200 more calls", func() bool {
		got, err := passing()
		if err != nil {
			return false
		}
		if back == nil && (has(got, "ghost") || watchHas("ghost") || clientHas("ghost")) {
			watchMu.Lock()
			back = []string{fmt.Sprintf("after %v: passing %v, watch %v, client has it: %v", time.Since(answered), got, watchSet, clientHas("ghost"))}
			watchMu.Unlock()
		}
		return has(got, "alive-1") && has(got, "alive-2") && calls.Load() >= after+200
	})
	if back != nil {
		t.Errorf("the ghost came back after it had left: %v", back)
	}
	stopLoad()
	load.Wait()
	t.Logf("after the agent answered, the ghost stayed in the passing set %v, in the watch %v, in the client %v (bound %v); %d of %d calls failed (last %v)",
		inPassing.Round(10*time.Millisecond), inWatch.Round(10*time.Millisecond), inClient.Round(10*time.Millisecond), ghostBound,
		fails.Load(), calls.Load(), lastErr.Load())
	if inPassing > ghostBound || inWatch > ghostBound || inClient > ghostBound {
		t.Errorf("ghost left passing after %v, the watch after %v, the client after %v; want each within %v", inPassing, inWatch, inClient, ghostBound)
	}
	if late.Load() != 0 {
		t.Errorf("%d calls begun more than %v after the agent answered failed (last %v); want 0", late.Load(), ghostBound, lastErr.Load())
	}
}
