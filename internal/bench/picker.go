package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// picker runs the benchmarks of balancer/internal/benchcmp, which build
// every policy and grpc-go's round_robin through their registered
// builders in the same run, and reports each policy's picker cost and
// loopback throughput as ratios to round_robin's.
func picker(tb testing.TB, _ *Backend, cfg Config) ([]Sample, error) {
	dir := cfg.ModuleDir
	if dir == "" {
		var err error
		if dir, err = moduleRoot(); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(tb.Context(), 20*time.Minute)
	defer cancel()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	// go test splits -bench at slashes into one pattern per level, so
	// "Pick/...|Throughput" cannot select both: run one go test per
	// pattern (PickerBench is a ";"-separated list).
	var out []byte
	for _, pat := range strings.Split(cfg.PickerBench, ";") {
		cmd := exec.CommandContext(ctx, gobin, "test", "-run", "^$", "-bench", pat, "-benchtime", cfg.PickerTime,
			"-benchmem", "-count", "1", "-timeout", "15m", "./balancer/internal/benchcmp")
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		o, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go test -bench %s: %v\n%s%s", pat, err, o, stderr.Bytes())
		}
		out = append(out, o...)
	}
	return pickerSamples(parseBench(out), parsePaired(out))
}

// benchLine matches "BenchmarkX/a/b-2   123   45.6 ns/op ...".
var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+([0-9.]+) ns/op`)

// parseBench returns ns/op by benchmark name, without the "Benchmark"
// prefix and the GOMAXPROCS suffix.
func parseBench(out []byte) map[string]float64 {
	res := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if v, err := strconv.ParseFloat(m[2], 64); err == nil {
			res[m[1]] = v
		}
	}
	return res
}

// pairedLine matches the ratio BenchmarkThroughput reports against
// round_robin measured in interleaved slices.
var pairedLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s.*\s([0-9.]+) x_round_robin`)

// parsePaired returns the x_round_robin ratios by benchmark name.
func parsePaired(out []byte) map[string]float64 {
	res := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := pairedLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if v, err := strconv.ParseFloat(m[2], 64); err == nil {
			res[m[1]] = v
		}
	}
	return res
}

// pickerSamples turns benchcmp's figures into one sample per policy:
// "Pick/n=10/<policy>/serial" becomes pick_n10_serial_ns and, divided by
// round_robin's, pick_n10_serial_ratio (cost: lower is better);
// "Throughput/<policy>" becomes throughput_calls_s and throughput_ratio
// (higher is better), the ratio measured in interleaved slices (paired)
// where the benchmark reports one, else from the two ns/op figures.
func pickerSamples(ns, paired map[string]float64) ([]Sample, error) {
	type key struct{ metric, policy string }
	vals := map[key]float64{}
	var policies []string
	seen := map[string]bool{}
	for name, v := range ns {
		parts := strings.Split(name, "/")
		var k key
		switch {
		case parts[0] == "Pick" && len(parts) == 4:
			k = key{fmt.Sprintf("pick_%s_%s", strings.ReplaceAll(parts[1], "=", ""), parts[3]), parts[2]}
		case parts[0] == "Throughput" && len(parts) == 2:
			k = key{"throughput", parts[1]}
		default:
			continue
		}
		vals[k] = v
		if !seen[k.policy] {
			seen[k.policy] = true
			policies = append(policies, k.policy)
		}
	}
	if !seen["round_robin"] {
		return nil, fmt.Errorf("picker: no round_robin figures among %d benchmarks", len(ns))
	}
	sortPolicies(policies)
	var out []Sample
	for _, p := range policies {
		m := map[string]float64{}
		for k, v := range vals {
			if k.policy != p {
				continue
			}
			base, ok := vals[key{k.metric, "round_robin"}]
			if k.metric == "throughput" {
				m["throughput_calls_s"] = 1e9 / v
				if r, found := paired["Throughput/"+p]; found {
					m["throughput_ratio"] = r
				} else if ok && v > 0 {
					m["throughput_ratio"] = base / v
				}
				continue
			}
			m[k.metric+"_ns"] = v
			if ok && base > 0 {
				m[k.metric+"_ratio"] = v / base
			}
		}
		out = append(out, Sample{Variant: p, Metrics: m})
	}
	return out, nil
}

// sortPolicies puts round_robin first, then the others by name.
func sortPolicies(p []string) {
	for i := range p {
		for j := i + 1; j < len(p); j++ {
			if p[j] == "round_robin" || (p[i] != "round_robin" && p[j] < p[i]) {
				p[i], p[j] = p[j], p[i]
			}
		}
	}
}

// moduleRoot finds go.mod upwards from the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("bench: no go.mod above the working directory; set the module directory")
		}
		dir = parent
	}
}
