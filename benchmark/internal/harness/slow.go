package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
// beside grpc-go's built-in of the same purpose. The pairs whose
// built-ins this module does not build (weighted_round_robin,
// outlier_detection_experimental: see Alternatives) are measured by
// xdsTail.
var tailGroups = [][]TailPolicy{
	{{"round_robin", "round_robin", "{}", ""}, {"wayfinder_p2c_ewma", "wayfinder_p2c_ewma", "{}", ""}, {"least_request_experimental", "least_request_experimental", "{}", ""}},
	{{"wayfinder_consistent_hash_header", "wayfinder_consistent_hash", `{"header":"` + hashHeader + `"}`, ""},
		{"ring_hash_experimental", "ring_hash_experimental", `{"requestHashHeader":"` + hashHeader + `"}`, "outside xDS it has no other hash key"}},
}

// slowBackend runs the tail of tailGroups on be and then, if
// cfg.TailXDS, that of the pairs of the xds module (xdsTail).
func slowBackend(tb testing.TB, be *Backend, cfg Config) ([]Sample, error) {
	out, err := Tail(tb, be, cfg, tailGroups)
	if err != nil || !cfg.TailXDS {
		return out, err
	}
	more, err := xdsTail(tb, cfg)
	if err != nil {
		return nil, err
	}
	for _, s := range more {
		if slices.ContainsFunc(out, func(x Sample) bool { return x.Variant == s.Variant }) {
			return nil, fmt.Errorf("slow_backend: %s measures %s too; variants must be unique", xdsModule, s.Variant)
		}
	}
	return append(out, more...), nil
}

// Tail is the slow-backend measurement, for this package's scenario and
// for commands in other modules (xdsTail runs one): it runs
// cfg.TailBackends real servers registered in be; for each group of
// policies in turn, after a warm-up, one of them answers every call after cfg.TailStall,
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

// xdsTailCommand is the command of xdsModule that runs Tail over the
// pairs whose built-ins only that module builds, and prints the samples
// as JSON on stdout.
const xdsTailCommand = "./cmd/xdstail"

// xdsTail builds xdsTailCommand in xdsModule and runs it at cfg's sizes:
// the same Tail, in a process of its own, on its own memory registry
// and servers, right after this process's groups. It returns the
// command's samples.
func xdsTail(tb testing.TB, cfg Config) ([]Sample, error) {
	dir := cfg.ModuleDir
	if dir == "" {
		var err error
		if dir, err = moduleRoot(); err != nil {
			return nil, err
		}
	}
	tmp, err := os.MkdirTemp("", "wfbench-xdstail-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "xdstail")
	// The first build of the module (grpc/xds, about 500 packages)
	// takes minutes; the run itself about 2 × (TailDuration + 2 s).
	bctx, cancel := context.WithTimeout(tb.Context(), 30*time.Minute)
	defer cancel()
	if err := runGo(bctx, filepath.Join(dir, filepath.FromSlash(xdsModule)), "build", "-o", bin, xdsTailCommand); err != nil {
		return nil, fmt.Errorf("%s: %w", xdsModule, err)
	}
	rctx, cancel := context.WithTimeout(tb.Context(), 5*time.Minute+4*cfg.TailDuration)
	defer cancel()
	cmd := exec.CommandContext(rctx, bin, "-servers", strconv.Itoa(cfg.TailBackends), "-stall", cfg.TailStall.String(),
		"-tail", cfg.TailDuration.String(), "-deadline", cfg.TailDeadline.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %v\n%s", xdsModule, xdsTailCommand, err, stderr.Bytes())
	}
	var out []Sample
	if err := json.Unmarshal(b, &out); err != nil || len(out) == 0 {
		return nil, fmt.Errorf("%s: %s printed no samples (%v): %q", xdsModule, xdsTailCommand, err, b)
	}
	return out, nil
}

// runGo runs the go command in dir.
func runGo(ctx context.Context, dir string, args ...string) error {
	gobin := "go" // found on PATH, as runtime.GOROOT's deprecation advises
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out.Bytes())
	}
	return nil
}
