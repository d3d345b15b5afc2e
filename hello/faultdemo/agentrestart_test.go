package faultdemo

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

var resultRE = regexp.MustCompile(`RESULT: \w+: (\d+) calls, (\d+) failed`)

// TestDemoSurvivesAgentRestart: the demo's load,
// with 1 and with 3 servers and no fault rounds of its own, over a
// consul:// registry whose agent (server mode, data dir) is SIGKILLed
// and started again mid-run, with default Wayfinder settings (guard on).
// Every server stays alive until the load ends, so the client's set
// must never lack one before then, and no call may fail.
func TestDemoSurvivesAgentRestart(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("servers=%d", n), func(t *testing.T) {
			agent := testenv.StartConsulWith(t, testenv.ConsulOptions{Server: true})
			cache := resolver.NewCache()
			t.Cleanup(func() { cache.Close() })
			var out syncBuffer
			type result struct {
				ok  bool
				err error
			}
			done := make(chan result, 1)
			go func() {
				ok, err := Run(t.Context(), Config{Registry: "consul://" + agent.HTTPAddr(), Duration: 16 * time.Second, Servers: n,
					Rate: 200, Workers: 4, Cache: cache}, &out)
				done <- result{ok, err}
			}()
			want := make([]string, n)
			for i := range n {
				want[i] = fmt.Sprintf("hello-%d", i+1)
			}
			view := func() (ids []string, updates int64, holding bool) {
				for _, wi := range cache.Watches() {
					if wi.Service != service {
						continue
					}
					for _, in := range wi.Instances {
						ids = append(ids, in.ID)
					}
					slices.Sort(ids)
					return ids, wi.Updates, wi.Holding
				}
				return nil, 0, false
			}
			wait.For(t, 30*time.Second, "the demo's client to have every server", func() bool {
				ids, _, _ := view()
				return slices.Equal(ids, want) && strings.Contains(out.String(), "demo: ")
			})

			// Sample the client's set from here to the end of the run.
			var (
				mu                     sync.Mutex
				samples, missed, holds int
				lacked                 []string
				lastUpdates            int64
				wasHolding             bool
			)
			stopSampling := make(chan struct{})
			var sampler sync.WaitGroup
			sampler.Go(func() {
				for {
					select {
					case <-stopSampling:
						return
					default:
					}
					ids, updates, holding := view()
					if strings.Contains(out.String(), "RESULT:") {
						return // the load has ended; the demo now deregisters its servers on purpose
					}
					mu.Lock()
					samples++
					if lastUpdates != 0 && updates > lastUpdates+1 {
						missed += int(updates - lastUpdates - 1) // updates published between two samples
					}
					lastUpdates = updates
					if holding && !wasHolding {
						holds++
					}
					wasHolding = holding
					for _, id := range want {
						if !slices.Contains(ids, id) && len(lacked) < 10 {
							lacked = append(lacked, fmt.Sprintf("%v", ids))
							break
						}
					}
					mu.Unlock()
					time.Sleep(time.Millisecond) // a sampling period, not a wait for a condition
				}
			})

			killed := time.Now()
			agent.Kill()
			agent.Start(t)
			back := time.Since(killed)

			var r result
			select {
			case r = <-done:
			case <-time.After(60 * time.Second):
				t.Fatalf("the demo did not end within 60s; output:\n%s", out.String())
			}
			close(stopSampling)
			sampler.Wait()
			m := resultRE.FindStringSubmatch(out.String())
			if m == nil {
				t.Fatalf("Run() = %v, %v with no RESULT line; output:\n%s", r.ok, r.err, out.String())
			}
			calls, _ := strconv.Atoi(m[1])
			failed, _ := strconv.Atoi(m[2])
			mu.Lock()
			defer mu.Unlock()
			t.Logf("%d server(s): agent SIGKILLed and answering again after %v; %d calls, %d failed; client set sampled %d times, %d updates between samples, %d hold(s); samples lacking a live server: %v",
				n, back.Round(10*time.Millisecond), calls, failed, samples, missed, holds, lacked)
			if r.err != nil || !r.ok || failed != 0 {
				t.Errorf("Run() = %v, %v: %d of %d calls failed, want 0; output:\n%s", r.ok, r.err, failed, calls, out.String())
			}
			if len(lacked) != 0 {
				t.Errorf("the client's set lacked a live server (first sets: %v), want all of %v throughout", lacked, want)
			}
		})
	}
}
