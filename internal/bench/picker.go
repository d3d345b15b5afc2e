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
	return pickerSamples(parseBench(out))
}

// benchLine matches "BenchmarkX/a/b-2   123   45.6 ns/op ...": the name
// without the prefix and GOMAXPROCS suffix, then the figures.
var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// parseBench returns, by benchmark name without the "Benchmark" prefix
// and the GOMAXPROCS suffix, ns/op and the x_round_robin ratio that
// BenchmarkThroughput reports, measured in slices interleaved with
// round_robin.
func parseBench(out []byte) (ns, paired map[string]float64) {
	ns, paired = map[string]float64{}, map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		// The figures come in "value unit" pairs.
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				ns[m[1]] = v
			case "x_round_robin":
				paired[m[1]] = v
			}
		}
	}
	return ns, paired
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
