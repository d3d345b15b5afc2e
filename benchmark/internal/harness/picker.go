package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Alternative is what a user would pick instead of a Wayfinder policy:
// grpc-go's built-in of the same purpose, configured as a user outside
// xDS would.
type Alternative struct {
	Wayfinder   string // the Wayfinder variant (package picker's label)
	Alternative string // the built-in's registered name
	Purpose     string
	Config      string // how the built-in is configured in the benchmarks
	Module      string // the module that measures the pair, relative to the root
}

// Alternatives are the pairs the picker and slow-backend scenarios
// measure side by side. benchmark/xds is a module of its
// own: weighted_round_robin needs the ORCA protos and
// outlier_detection_experimental registers only with grpc/xds, which the
// library's module does not build.
var Alternatives = []Alternative{
	{"wayfinder_p2c_ewma", "least_request_experimental", "load-aware choice", "`{}` (choiceCount 2)", pickerModule},
	{"wayfinder_consistent_hash_header", "ring_hash_experimental", "consistent hashing", "`{\"requestHashHeader\":\"x-bench-key\"}`; Wayfinder's with `{\"header\":\"x-bench-key\"}`", pickerModule},
	{"wayfinder_weighted_round_robin", "weighted_round_robin", "weighted round robin", "`{}`; no ORCA load reports from the servers, so it weighs all alike", xdsModule},
	{"wayfinder_outlier_ejection", "outlier_detection_experimental", "outlier ejection over round_robin", "`{\"childPolicy\":[{\"round_robin\":{}}],\"failurePercentageEjection\":{}}`", xdsModule},
}

const (
	pickerModule = "benchmark/internal/picker"
	xdsModule    = "benchmark/xds"
)

// picker runs the benchmarks of benchmark/internal/picker, which build
// every policy, grpc-go's round_robin and the built-in alternatives
// through their registered builders in the same run, and reports each
// policy's picker cost and loopback throughput as ratios to
// round_robin's and to its alternative's. The pairs of the xds module
// run in a go test of their own, with a round_robin of their own.
func picker(tb testing.TB, _ *Backend, cfg Config) ([]Sample, error) {
	dir := cfg.ModuleDir
	if dir == "" {
		var err error
		if dir, err = moduleRoot(); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(tb.Context(), 30*time.Minute)
	defer cancel()
	gobin := "go" // found on PATH, as runtime.GOROOT's deprecation advises
	var out []Sample
	for _, mod := range []string{pickerModule, xdsModule} {
		// go test splits -bench at slashes into one pattern per level,
		// so "Pick/...|Throughput" cannot select both: run one go test
		// per pattern (PickerBench is a ";"-separated list).
		var o []byte
		for _, pat := range strings.Split(cfg.PickerBench, ";") {
			// "pattern@d" runs pattern with -benchtime d instead of
			// PickerTime: the throughput pairs need longer slices than
			// a pick does to tell a few percent from the noise.
			bt := cfg.PickerTime
			if p, t, ok := strings.Cut(pat, "@"); ok {
				pat, bt = p, t
			}
			cmd := exec.CommandContext(ctx, gobin, "test", "-run", "^$", "-bench", pat, "-benchtime", bt,
				"-benchmem", "-count", "1", "-timeout", "20m", ".")
			cmd.Dir = filepath.Join(dir, filepath.FromSlash(mod))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			b, err := cmd.Output()
			if err != nil {
				return nil, fmt.Errorf("%s: go test -bench %s: %v\n%s%s", mod, pat, err, b, stderr.Bytes())
			}
			o = append(o, b...)
		}
		f := parseBench(o)
		if mod != pickerModule && len(f["ns/op"]) == 0 {
			continue // the patterns select nothing there (BenchmarkUpdate)
		}
		ss, err := pickerSamples(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", mod, err)
		}
		out = mergeSamples(out, ss)
	}
	return out, nil
}

// mergeSamples adds more to samples: a variant samples already has only
// gains the ratios to its alternative (measured beside it in more's run).
func mergeSamples(samples, more []Sample) []Sample {
	for _, s := range more {
		i := slices.IndexFunc(samples, func(x Sample) bool { return x.Variant == s.Variant })
		if i < 0 {
			samples = append(samples, s)
			continue
		}
		for k, v := range s.Metrics {
			if strings.HasSuffix(k, "_vs_alt") || strings.HasPrefix(k, "alt_") {
				samples[i].Metrics[k] = v
			}
		}
	}
	return samples
}

// benchLine matches "BenchmarkX/a/b-2   123   45.6 ns/op ...": the name
// without the prefix and GOMAXPROCS suffix, then the figures.
var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// figures are go test -bench's figures by benchmark name without the
// "Benchmark" prefix and the GOMAXPROCS suffix, by unit: ns/op, B/op,
// allocs/op, and the ratios the throughput benchmarks report, measured
// in slices interleaved with a baseline: x_round_robin (Throughput) and
// x_alternative (Versus).
type figures map[string]map[string]float64

func parseBench(out []byte) figures {
	f := figures{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		// The figures come in "value unit" pairs.
		fs := strings.Fields(m[2])
		for i := 0; i+1 < len(fs); i += 2 {
			v, err := strconv.ParseFloat(fs[i], 64)
			if err != nil {
				continue
			}
			if f[fs[i+1]] == nil {
				f[fs[i+1]] = map[string]float64{}
			}
			f[fs[i+1]][m[1]] = v
		}
	}
	return f
}

// pickerSamples turns package picker's figures into one sample per policy:
// "Pick/n=10/<policy>/serial" becomes pick_n10_serial_ns (with _bop and
// _allocs) and pick_n10_serial_ratio, its time over round_robin's (cost:
// lower is better) measured in interleaved slices where the benchmark
// reports one (x_round_robin, with its _ci95), else from the two ns/op
// figures; "Throughput/<policy>" becomes throughput_calls_s and
// throughput_ratio (higher is better), the ratio measured in interleaved
// slices where the benchmark reports one, else from the two ns/op
// figures. For a Wayfinder policy whose alternative ran too, every pick
// metric gains <metric>_vs_alt (its cost over the alternative's) and
// "Versus/<policy>" becomes throughput_vs_alt (its calls per second over
// the alternative's, interleaved); alt_<metric>_ns records the
// alternative's own figure.
func pickerSamples(f figures) ([]Sample, error) {
	ns := f["ns/op"]
	type key struct{ metric, policy string }
	vals := map[key]float64{}
	names := map[key]string{} // the benchmark's name
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
		case parts[0] == "Update" && len(parts) == 3:
			k = key{"update_" + strings.ReplaceAll(parts[1], "=", ""), parts[2]}
		default:
			continue
		}
		vals[k] = v
		names[k] = name
		if !seen[k.policy] {
			seen[k.policy] = true
			policies = append(policies, k.policy)
		}
	}
	if !seen["round_robin"] {
		return nil, fmt.Errorf("picker: no round_robin figures among %d benchmarks", len(ns))
	}
	alt := map[string]string{}
	for _, a := range Alternatives {
		alt[a.Wayfinder] = a.Alternative
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
				if r, found := f["x_round_robin"]["Throughput/"+p]; found {
					m["throughput_ratio"] = r
					if ci, found := f["x_round_robin_ci95"]["Throughput/"+p]; found {
						m["throughput_ratio_ci95"] = ci
					}
				} else if ok && v > 0 {
					m["throughput_ratio"] = base / v
				}
				continue
			}
			m[k.metric+"_ns"] = v
			name := names[k]
			if b, found := f["B/op"][name]; found {
				m[k.metric+"_bop"] = b
			}
			if a, found := f["allocs/op"][name]; found {
				m[k.metric+"_allocs"] = a
			}
			if r, found := f["x_round_robin"][name]; found {
				// Measured in slices alternating with round_robin's.
				m[k.metric+"_ratio"] = r
				if ci, found := f["x_round_robin_ci95"][name]; found {
					m[k.metric+"_ratio_ci95"] = ci
				}
			} else if ok && base > 0 {
				m[k.metric+"_ratio"] = v / base
			}
			if a, found := vals[key{k.metric, alt[p]}]; found && alt[p] != "" && a > 0 {
				m[k.metric+"_vs_alt"] = v / a
				m["alt_"+k.metric+"_ns"] = a
			}
		}
		if r, found := f["x_alternative"]["Versus/"+p]; found {
			m["throughput_vs_alt"] = r
			if ci, found := f["x_alternative_ci95"]["Versus/"+p]; found {
				m["throughput_vs_alt_ci95"] = ci
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
