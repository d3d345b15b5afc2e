package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	_ "google.golang.org/grpc/balancer/leastrequest" // registers least_request_experimental
	_ "google.golang.org/grpc/balancer/ringhash"     // registers ring_hash_experimental
	"google.golang.org/grpc/metadata"

	"github.com/wayfinder-rpc/wayfinder/balancer/hash"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/p2c" // registers wayfinder_p2c_ewma
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
)

// hashHeader carries every call's hash key, for the hashing policies
// configured to read it (ring_hash_experimental has no other key outside
// xDS); every call also carries it through hash.WithKey.
const hashHeader = "x-bench-key"

// TailPolicy is one ClientConn of the slow-backend scenario: Variant
// names it in the report (unique among all the groups), Name is the
// registered policy and Config its JSON config; Why, if set, says why it
// is configured so. The report lists each policy's loadBalancingConfig
// and Why under its figures.
type TailPolicy struct{ Variant, Name, Config, Why string }

// tailGroups are measured one group after another; the policies of a
// group call the same servers at the same time, each Wayfinder policy
// beside grpc-go's built-in of the same purpose. weighted_round_robin and
// outlier_detection_experimental are not among them: this module does
// not build them (see Alternatives).
var tailGroups = [][]TailPolicy{
	{{"round_robin", "round_robin", "{}", ""}, {"wayfinder_p2c_ewma", "wayfinder_p2c_ewma", "{}", ""}, {"least_request_experimental", "least_request_experimental", "{}", ""}},
	{{"wayfinder_consistent_hash_header", "wayfinder_consistent_hash", `{"header":"` + hashHeader + `"}`, ""},
		{"ring_hash_experimental", "ring_hash_experimental", `{"requestHashHeader":"` + hashHeader + `"}`, "outside xDS it has no other hash key"}},
}

// slowBackend runs the tail of tailGroups on be.
func slowBackend(tb testing.TB, be *Backend, cfg Config) ([]Sample, error) {
	return Tail(tb, be, cfg, tailGroups)
}

// Tail is the slow-backend measurement, for this package's scenario and
// for commands in other modules: it runs cfg.TailBackends real servers
// registered in be; for each group of policies in turn,
// after a warm-up, one of them answers every call after cfg.TailStall,
// for cfg.TailDuration. The group's ClientConns call them at the same
// time, each call with a cfg.TailDeadline deadline and a random hash
// key, from the same number of closed-loop workers. It reports each
// policy's success rate and latency during the stall, with its
// loadBalancingConfig and Why as notes.
func Tail(tb testing.TB, be *Backend, cfg Config, groups [][]TailPolicy) ([]Sample, error) {
	ctx := tb.Context()
	svc := uniqueService("slow")
	reg := be.Open(tb, nil)
	var servers []*helloServer
	var names []string
	for i := range cfg.TailBackends {
		h := startHello(tb, fmt.Sprintf("b%d", i))
		if err := register(ctx, reg, h.instance(svc), 10*time.Second); err != nil {
			return nil, err
		}
		servers = append(servers, h)
		names = append(names, h.name)
	}
	var out []Sample
	for _, g := range groups {
		ss, err := slowGroup(tb, be, cfg, svc, servers, names, g)
		if err != nil {
			return nil, err
		}
		out = append(out, ss...)
	}
	return out, nil
}

func slowGroup(tb testing.TB, be *Backend, cfg Config, svc string, servers []*helloServer, names []string, group []TailPolicy) ([]Sample, error) {
	ctx := tb.Context()
	clients := map[string]hellopb.HelloServiceClient{}
	for _, p := range group {
		_, c := dialConfig(tb, be.Open(tb, nil), newCache(tb), svc, fmt.Sprintf(`{%q:%s}`, p.Name, p.Config))
		if err := waitServing(ctx, c, 30*time.Second, names...); err != nil {
			return nil, fmt.Errorf("%s: %w", p.Variant, err)
		}
		clients[p.Variant] = c
	}
	const workers = 8
	type stat struct {
		mu        sync.Mutex
		lat       []time.Duration
		failures  int
		recording bool
	}
	stats := map[string]*stat{}
	rctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, p := range group {
		st := &stat{}
		stats[p.Variant] = st
		for range workers {
			wg.Go(func() {
				for rctx.Err() == nil {
					key := strconv.FormatUint(rand.Uint64(), 36)
					cctx := metadata.AppendToOutgoingContext(hash.WithKey(context.Background(), key), hashHeader, key)
					t0 := time.Now()
					_, err := call(cctx, clients[p.Variant], cfg.TailDeadline)
					d := time.Since(t0)
					st.mu.Lock()
					if st.recording {
						if err != nil {
							st.failures++
							d = max(d, cfg.TailDeadline)
						}
						st.lat = append(st.lat, d)
					}
					st.mu.Unlock()
					sleep(rctx, time.Millisecond)
				}
			})
		}
	}
	sleep(ctx, time.Second) // warm-up: every policy has latency figures
	slow := servers[len(servers)/2]
	slow.delay.Store(int64(cfg.TailStall))
	for _, st := range stats {
		st.mu.Lock()
		st.recording = true
		st.mu.Unlock()
	}
	sleep(ctx, cfg.TailDuration)
	for _, st := range stats {
		st.mu.Lock()
		st.recording = false
		st.mu.Unlock()
	}
	slow.delay.Store(0)
	stop()
	wg.Wait()
	var out []Sample
	for _, p := range group {
		st := stats[p.Variant]
		n := len(st.lat)
		m := map[string]float64{
			"calls":       float64(n),
			"failed":      float64(st.failures),
			"success_pct": 100 * float64(n-st.failures) / float64(max(n, 1)),
			"p50_ms":      ms(percentile(st.lat, 0.50)),
			"p99_ms":      ms(percentile(st.lat, 0.99)),
			"p999_ms":     ms(percentile(st.lat, 0.999)),
			"max_ms":      ms(percentile(st.lat, 1)),
		}
		notes := []string{fmt.Sprintf("`{%q:%s}`", p.Name, p.Config)}
		if p.Why != "" {
			notes = append(notes, p.Why)
		}
		out = append(out, Sample{Variant: p.Variant, Metrics: m, Notes: notes})
	}
	return out, nil
}
