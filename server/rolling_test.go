package server_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// rollResult is what a rolling restart under load saw.
type rollResult struct {
	calls, failures int64
	restarts        int
	stopTimes       []time.Duration
	lastErr         error
}

// rollingRestart runs servers instances of HelloService registered
// through srvReg, a client that calls them steadily through a Wayfinder
// resolver over cliDisc with no retry policy, and restarts every server
// in turn on a new port, rounds times. With naive set, each server is
// stopped the way the 2019 seed did it — stop serving, deregister after —
// so the harness shows it can see failures.
func rollingRestart(t *testing.T, srvReg registry.Registrar, cliDisc registry.Discovery, servers, rounds int, naive bool) rollResult {
	t.Helper()
	gen := 0
	start := func() *server.Server {
		gen++
		id := fmt.Sprintf("roll-%d", gen)
		s, err := server.New(srvReg, "hello", server.WithID(id), server.WithDrainTimeout(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: id})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		waitRegistered(t, s)
		return s
	}
	var live []*server.Server
	for range servers {
		live = append(live, start())
	}
	defer func() {
		for _, s := range live {
			s.Stop(context.Background())
		}
	}()

	cache := resolver.NewCache(resolver.WithLinger(0))
	defer cache.Close()
	cc, err := grpc.NewClient("wayfinder:///hello", grpc.WithResolvers(resolver.NewBuilder(cliDisc, resolver.WithCache(cache))),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := hellopb.NewHelloServiceClient(cc)
	wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Second)
	if _, err := client.SayHello(wctx, &hellopb.HelloRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("warm-up call = %v", err)
	}
	wcancel()

	var res rollResult
	var calls, failures atomic.Int64
	var errMu sync.Mutex
	served := map[string]bool{} // under errMu: servers that answered a call
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := client.SayHello(cctx, &hellopb.HelloRequest{Name: "roll"})
				ccancel()
				calls.Add(1)
				errMu.Lock()
				if err != nil {
					failures.Add(1)
					res.lastErr = err
				} else {
					_, from, _ := strings.Cut(resp.GetMessage(), " from ")
					served[from] = true
				}
				errMu.Unlock()
			}
		})
	}
	for range rounds {
		for range servers {
			old := live[0]
			live = live[1:]
			t0 := time.Now()
			if naive {
				old.GRPC().Stop()
				if err := srvReg.Deregister(t.Context(), old.Instance()); err != nil {
					t.Errorf("Deregister = %v", err)
				}
			}
			sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := old.Stop(sctx); err != nil {
				t.Errorf("Stop(%s) = %v", old, err)
			}
			scancel()
			res.stopTimes = append(res.stopTimes, time.Since(t0))
			s := start()
			live = append(live, s)
			res.restarts++
			// Roll on once the new server takes the client's traffic, as a
			// rolling deploy waits for its new replica; a fixed pause
			// assumed the client's watch keeps up with the rolls.
			wait.For(t, 30*time.Second, "the new server "+s.Instance().ID+" to answer a call", func() bool {
				errMu.Lock()
				defer errMu.Unlock()
				return served[s.Instance().ID]
			})
		}
	}
	cancel()
	wg.Wait()
	res.calls, res.failures = calls.Load(), failures.Load()
	return res
}

func logRoll(t *testing.T, name string, r rollResult) {
	var total time.Duration
	maxStop := time.Duration(0)
	for _, d := range r.stopTimes {
		total += d
		maxStop = max(maxStop, d)
	}
	t.Logf("%s: %d calls, %d failed, %d restarts, stop mean %v max %v, last error %v", name, r.calls, r.failures, r.restarts,
		(total / time.Duration(max(1, len(r.stopTimes)))).Round(time.Microsecond), maxStop.Round(time.Microsecond), r.lastErr)
}

func TestRollingRestartMemory(t *testing.T) {
	store := memory.NewStore()
	r := rollingRestart(t, store.Open(), store.Open(), 5, 10, false)
	logRoll(t, "memory, drain order", r)
	if r.failures != 0 || r.restarts != 50 || r.calls < 100 {
		t.Fatalf("rolling restart: %d of %d calls failed over %d restarts (last error %v); want 0 failures", r.failures, r.calls, r.restarts, r.lastErr)
	}
}

// TestRollingRestartNaiveOrderFails proves the harness sees failures: the
// seed's order — stop first, deregister after — loses calls.
func TestRollingRestartNaiveOrderFails(t *testing.T) {
	store := memory.NewStore()
	r := rollingRestart(t, store.Open(), store.Open(), 5, 5, true)
	logRoll(t, "memory, naive order", r)
	if r.failures == 0 {
		t.Fatalf("naive stop-then-deregister order: 0 of %d calls failed; the harness cannot see failures", r.calls)
	}
}
