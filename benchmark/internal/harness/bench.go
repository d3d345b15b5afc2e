// Package harness is Wayfinder's benchmark harness: scenarios that measure
// what a discovery layer exists for, against real Consul and etcd servers
// and real gRPC servers on loopback, each beside a baseline in the same
// run, and a report (JSON, Markdown, SVG charts) of the medians over
// repeated runs. The command is benchmark/cmd/wfbench; `make bench`
// runs it and writes docs/benchmarks.md.
//
// Scenarios report figures and ratios; they assert nothing about timing.
// Only properties that must hold whatever the machine (the drain order
// loses no call, the client converges) are checked by the tests.
//
// # Concurrency
//
// Run runs scenarios one after another. Each scenario run owns its
// goroutines and servers through a TB that is closed when it ends.
package harness

import (
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/standalone"
)

// Config sizes the scenarios. DefaultConfig is what `make bench` runs.
type Config struct {
	Runs      int      `json:"runs"`      // repetitions of each scenario; figures are medians
	Backends  []string `json:"backends"`  // memory, consul, etcd, zookeeper
	Scenarios []string `json:"scenarios"` // names from Scenarios(); empty means all

	Changes       int           `json:"changes"`                // propagation: register+deregister pairs per run and variant
	IdleConns     int           `json:"idle_conns"`             // idle load: ClientConns in the process
	IdleServices  int           `json:"idle_services"`          // idle load: services they watch
	IdleWindow    time.Duration `json:"idle_window"`            // idle load: counting window
	PickerBench   string        `json:"picker_bench"`           // picker: ";"-separated -bench patterns for benchmark/internal/picker, each with an optional "@benchtime"
	PickerTime    string        `json:"picker_time"`            // picker: -benchtime
	Rolls         int           `json:"rolls"`                  // rolling restart: restarts per run and order
	RollServers   int           `json:"roll_servers"`           // rolling restart: servers in the rotation
	Outage        time.Duration `json:"outage"`                 // outage: how long the registry is down
	TailDuration  time.Duration `json:"tail_duration"`          // slow backend: how long one backend stalls
	TailBackends  int           `json:"tail_backends"`          // slow backend: backends, one of which stalls
	TailStall     time.Duration `json:"tail_stall"`             // slow backend: the stall
	TailDeadline  time.Duration `json:"tail_deadline"`          // slow backend: each call's deadline
	TailXDS       bool          `json:"tail_xds"`               // slow backend: also the pairs of benchmark/xds, in that module
	HeteroPhase   time.Duration `json:"hetero_phase,omitempty"` // heterogeneous: each measured phase (before and after the degradation)
	HeteroRate    float64       `json:"hetero_rate,omitempty"`  // heterogeneous: calls per second to each policy, open loop
	ScaleServices int           `json:"scale_services"`         // scale: services one client watches
	ScaleInsts    int           `json:"scale_instances"`
	ScaleSetSize  int           `json:"scale_set_size,omitempty"` // scale: instances per set on a backend with a SetWriter (Kubernetes: per EndpointSlice)
	ScaleChanges  int           `json:"scale_changes,omitempty"`  // scale_picker: register+deregister pairs per policy
	ModuleDir     string        `json:"-"`                        // the module root, for `go test -bench`

	LoadClients  int           `json:"load_clients,omitempty"`  // server load: client processes
	LoadServices int           `json:"load_services,omitempty"` // server load: services each of them watches
	LoadIdle     time.Duration `json:"load_idle,omitempty"`     // server load: the floor and idle windows
	LoadChange   time.Duration `json:"load_change,omitempty"`   // server load: the window under change
	LoadRate     float64       `json:"load_rate,omitempty"`     // server load: changes per second in it

	XDSChanges    int `json:"xds_changes,omitempty"`     // xds: changes per variant, in each of its three measurements
	XDSClients    int `json:"xds_clients,omitempty"`     // xds: raw ADS clients of one xDS server
	XDSServices   int `json:"xds_services,omitempty"`    // xds: services each of them asks for
	XDSGoClients  int `json:"xds_go_clients,omitempty"`  // xds: grpc-go xDS clients beside them
	XDSEndpoints  int `json:"xds_endpoints,omitempty"`   // xds: endpoints of the one large service
	XDSEDSClients int `json:"xds_eds_clients,omitempty"` // xds: raw clients of the large service, per protocol variant

	// More builds backends other than memory, consul and etcd, by name,
	// for the life of the run's TB: the Kubernetes backend, whose
	// command lives in the backend's own module.
	More map[string]func(tb testing.TB) *Backend `json:"-"`

	Log io.Writer `json:"-"` // progress; nil discards
}

// DefaultConfig is the full run of `make bench`.
func DefaultConfig() Config {
	return Config{
		Runs:          3,
		Backends:      []string{"memory", "consul", "etcd", "zookeeper"},
		Changes:       20,
		IdleConns:     100,
		IdleServices:  10,
		IdleWindow:    20 * time.Second,
		PickerBench:   "Pick/^n=(10|1000)$/;Throughput@3s;Versus@3s;Update",
		PickerTime:    "1s",
		Rolls:         20,
		RollServers:   5,
		Outage:        30 * time.Second,
		TailDuration:  30 * time.Second,
		TailBackends:  11,
		TailStall:     2 * time.Second,
		TailDeadline:  time.Second,
		TailXDS:       true,
		HeteroPhase:   8 * time.Second,
		HeteroRate:    100,
		ScaleServices: 1000,
		ScaleInsts:    5000,
		ScaleSetSize:  100, // the EndpointSlice controller's default
		ScaleChanges:  20,
		LoadClients:   20,
		LoadServices:  50,
		LoadIdle:      15 * time.Second,
		LoadChange:    15 * time.Second,
		LoadRate:      1,
		XDSChanges:    20,
		XDSClients:    1000,
		XDSServices:   10,
		XDSGoClients:  3,
		XDSEndpoints:  5000,
		XDSEDSClients: 10,
	}
}

// Sample is one run's figures for one variant (the thing measured, or
// its baseline).
type Sample struct {
	Variant string
	Metrics map[string]float64
	Notes   []string
}

// Result is a scenario's figures on one backend for one variant: the
// median of each metric over the runs, and every run's figures.
type Result struct {
	Scenario string               `json:"scenario"`
	Backend  string               `json:"backend"`
	Variant  string               `json:"variant"`
	Metrics  map[string]float64   `json:"metrics"`
	Runs     []map[string]float64 `json:"runs"`
	Notes    []string             `json:"notes,omitempty"`
}

// Failure is a scenario run that could not complete.
type Failure struct {
	Scenario string `json:"scenario"`
	Backend  string `json:"backend"`
	Run      int    `json:"run"`
	Error    string `json:"error"`
}

// Machine describes where the report was measured.
type Machine struct {
	Cores     int               `json:"cores"`
	CPU       string            `json:"cpu"`
	GOOS      string            `json:"goos"`
	GOARCH    string            `json:"goarch"`
	GoVersion string            `json:"go_version"`
	Backends  map[string]string `json:"backends"` // name → version
}

// Report is everything a run of the harness measured.
type Report struct {
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Machine  Machine   `json:"machine"`
	Config   Config    `json:"config"`
	Results  []Result  `json:"results"`
	Failures []Failure `json:"failures,omitempty"`
	Notes    []string  `json:"notes,omitempty"` // added by hand to a report, rendered under the machine
}

// Find returns the result of scenario on backend for variant.
func (r *Report) Find(scenario, backend, variant string) (Result, bool) {
	for _, res := range r.Results {
		if res.Scenario == scenario && res.Backend == backend && res.Variant == variant {
			return res, true
		}
	}
	return Result{}, false
}

// scenario is one measurement.
type scenario struct {
	name       string
	perBackend bool // run on every backend; otherwise once, reported as backend "memory" or "-"
	backend    string
	sets       bool // also run on every chosen backend with a SetWriter
	run        func(tb testing.TB, be *Backend, cfg Config) ([]Sample, error)
}

var scenarios = []scenario{
	{name: "propagation", perBackend: true, run: propagation},
	{name: "idle_load", perBackend: true, run: idleLoad},
	{name: "picker", backend: "-", run: picker},
	{name: "rolling_restart", perBackend: true, run: rolling},
	{name: "outage", perBackend: true, run: outage},
	{name: "slow_backend", backend: "memory", run: slowBackend},
	{name: "heterogeneous", backend: "memory", run: heterogeneous},
	{name: "scale", backend: "memory", sets: true, run: scale},
	{name: "scale_picker", perBackend: true, run: scalePicker},
	{name: "server_load", backend: "-", run: serverLoad}, // on the chosen Consul and etcd, servers of its own
	{name: "xds", backend: "memory", run: xdsServer},     // in benchmark/xds, on its own memory registry
}

// Scenarios returns the scenario names in the order Run runs them.
func Scenarios() []string {
	out := make([]string, len(scenarios))
	for i, s := range scenarios {
		out[i] = s.name
	}
	return out
}

// Run runs the scenarios chosen by cfg on the backends chosen by cfg,
// starting the Consul and etcd servers with parent, and returns the
// report. A scenario run that fails is recorded in Report.Failures and
// the others go on.
func Run(parent testing.TB, cfg Config) *Report {
	logw := cfg.Log
	if logw == nil {
		logw = io.Discard
	}
	rep := &Report{Started: time.Now(), Config: cfg, Machine: machine()}
	start := time.Now()
	backends := map[string]*Backend{}
	for _, name := range cfg.Backends {
		var be *Backend
		switch name {
		case "memory":
			be = NewMemory()
		case "consul":
			be = NewConsul(parent)
		case "etcd":
			be = NewEtcd(parent)
		case "zookeeper":
			be = NewZooKeeper(parent)
		default:
			mk, ok := cfg.More[name]
			if !ok {
				known := append([]string{"memory", "consul", "etcd", "zookeeper"}, slices.Sorted(maps.Keys(cfg.More))...)
				parent.Fatalf("bench: unknown backend %q; known: %s", name, strings.Join(known, ", "))
			}
			be = mk(parent)
		}
		backends[name] = be
		rep.Machine.Backends[name] = be.Version
	}
	mem := backends["memory"]
	if mem == nil {
		mem = NewMemory()
	}
	for _, sc := range scenarios {
		if len(cfg.Scenarios) > 0 && !slices.Contains(cfg.Scenarios, sc.name) {
			continue
		}
		type target struct {
			name string
			be   *Backend
		}
		var targets []target
		if sc.perBackend {
			for _, name := range cfg.Backends {
				targets = append(targets, target{name, backends[name]})
			}
		} else {
			// A scenario for sets runs on memory unless only backends
			// with sets were chosen.
			if !sc.sets || !onlySets(cfg.Backends, backends) {
				targets = []target{{sc.backend, mem}}
			}
			for _, name := range cfg.Backends {
				if sc.sets && backends[name].sets != nil {
					targets = append(targets, target{name, backends[name]})
				}
			}
		}
		for _, tg := range targets {
			var runs [][]Sample
			for i := range max(1, cfg.Runs) {
				t0 := time.Now()
				fmt.Fprintf(logw, "bench: %s on %s, run %d/%d\n", sc.name, tg.name, i+1, max(1, cfg.Runs))
				tb := standalone.New(fmt.Sprintf("%s/%s/run%d", sc.name, tg.name, i+1), logw)
				var samples []Sample
				err := standalone.Do(tb, func() {
					var err error
					samples, err = sc.run(tb, tg.be, cfg)
					if err != nil {
						tb.Fatalf("%v", err)
					}
				})
				tb.Close()
				if err != nil {
					fmt.Fprintf(logw, "bench: %s on %s, run %d failed: %v\n", sc.name, tg.name, i+1, err)
					rep.Failures = append(rep.Failures, Failure{Scenario: sc.name, Backend: tg.name, Run: i + 1, Error: err.Error()})
					continue
				}
				fmt.Fprintf(logw, "bench: %s on %s, run %d done in %v\n", sc.name, tg.name, i+1, time.Since(t0).Round(time.Millisecond))
				runs = append(runs, samples)
			}
			rep.Results = append(rep.Results, merge(sc.name, tg.name, runs)...)
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep
}

// scenarioSizes copies the Config fields that size each scenario from
// src to dst, for Merge.
var scenarioSizes = map[string]func(dst *Config, src Config){
	"propagation": func(d *Config, s Config) { d.Changes = s.Changes },
	"idle_load": func(d *Config, s Config) {
		d.IdleConns, d.IdleServices, d.IdleWindow = s.IdleConns, s.IdleServices, s.IdleWindow
	},
	"picker":          func(d *Config, s Config) { d.PickerBench, d.PickerTime = s.PickerBench, s.PickerTime },
	"rolling_restart": func(d *Config, s Config) { d.Rolls, d.RollServers = s.Rolls, s.RollServers },
	"outage":          func(d *Config, s Config) { d.Outage = s.Outage },
	"slow_backend": func(d *Config, s Config) {
		d.TailDuration, d.TailBackends, d.TailStall, d.TailDeadline = s.TailDuration, s.TailBackends, s.TailStall, s.TailDeadline
		d.TailXDS = s.TailXDS
	},
	"heterogeneous": func(d *Config, s Config) { d.HeteroPhase, d.HeteroRate = s.HeteroPhase, s.HeteroRate },
	"scale": func(d *Config, s Config) {
		d.ScaleServices, d.ScaleInsts = s.ScaleServices, s.ScaleInsts
	},
	"scale_picker": func(d *Config, s Config) { d.ScaleInsts, d.ScaleChanges = s.ScaleInsts, s.ScaleChanges },
	"xds": func(d *Config, s Config) {
		d.XDSChanges, d.XDSClients, d.XDSServices, d.XDSGoClients, d.XDSEndpoints, d.XDSEDSClients = s.XDSChanges, s.XDSClients, s.XDSServices, s.XDSGoClients, s.XDSEndpoints, s.XDSEDSClients
	},
	"server_load": func(d *Config, s Config) {
		d.LoadClients, d.LoadServices, d.LoadIdle, d.LoadChange, d.LoadRate = s.LoadClients, s.LoadServices, s.LoadIdle, s.LoadChange, s.LoadRate
	},
}

// onlySets reports whether every chosen backend has a SetWriter.
func onlySets(names []string, backends map[string]*Backend) bool {
	for _, n := range names {
		if backends[n].sets == nil {
			return false
		}
	}
	return len(names) > 0
}

// merge turns runs of samples into results, one per variant, in the
// order variants first appear.
func merge(scenario, backend string, runs [][]Sample) []Result {
	var order []string
	by := map[string]*Result{}
	for _, samples := range runs {
		for _, s := range samples {
			r, ok := by[s.Variant]
			if !ok {
				r = &Result{Scenario: scenario, Backend: backend, Variant: s.Variant}
				by[s.Variant] = r
				order = append(order, s.Variant)
			}
			r.Runs = append(r.Runs, s.Metrics)
			for _, n := range s.Notes {
				if !slices.Contains(r.Notes, n) {
					r.Notes = append(r.Notes, n)
				}
			}
		}
	}
	out := make([]Result, 0, len(order))
	for _, v := range order {
		r := by[v]
		r.Metrics = map[string]float64{}
		keys := map[string]bool{}
		for _, m := range r.Runs {
			for k := range m {
				keys[k] = true
			}
		}
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			var vals []float64
			for _, m := range r.Runs {
				if v, ok := m[k]; ok {
					vals = append(vals, v)
				}
			}
			r.Metrics[k] = median(vals)
		}
		out = append(out, *r)
	}
	return out
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, GoVersion: runtime.Version(), Backends: map[string]string{}}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

var serviceSeq atomic.Int64

// uniqueService returns a service name not used before in this process.
func uniqueService(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), serviceSeq.Add(1))
}

// median returns the median of vals (the mean of the middle two for an
// even count), or 0 for none.
func median(vals []float64) float64 {
	if len(vals) == 0 {
		return 0
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile returns the p-quantile (0..1) of d by the nearest-rank
// method.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// putPercentiles stores p50, p90, p99 and max of d, in milliseconds.
func putPercentiles(m map[string]float64, prefix string, d []time.Duration) {
	m[prefix+"_p50_ms"] = ms(percentile(d, 0.50))
	m[prefix+"_p90_ms"] = ms(percentile(d, 0.90))
	m[prefix+"_p99_ms"] = ms(percentile(d, 0.99))
	m[prefix+"_max_ms"] = ms(percentile(d, 1))
}

// Merge adds old's results and failures for the scenarios and backends
// r did not run, so that re-measuring one scenario (or one backend of it)
// keeps the others' figures; a note records which come from which run.
func (r *Report) Merge(old *Report) {
	ran := map[string]bool{}
	for _, res := range r.Results {
		ran[res.Scenario+"/"+res.Backend] = true
	}
	for _, f := range r.Failures {
		ran[f.Scenario+"/"+f.Backend] = true
	}
	kept := false
	for _, res := range old.Results {
		if !ran[res.Scenario+"/"+res.Backend] {
			r.Results = append(r.Results, res)
			kept = true
		}
	}
	for _, f := range old.Failures {
		if !ran[f.Scenario+"/"+f.Backend] {
			r.Failures = append(r.Failures, f)
		}
	}
	if !kept {
		return
	}
	// The report renders the sizes in Config: those of the old run for
	// the scenarios this run did not measure, and this run's for those
	// it did.
	cfg := old.Config
	rerunScenarios := map[string]bool{}
	for k := range ran {
		sc, _, _ := strings.Cut(k, "/")
		rerunScenarios[sc] = true
	}
	var differ []string
	for _, sc := range slices.Sorted(maps.Keys(rerunScenarios)) {
		if copySizes := scenarioSizes[sc]; copySizes != nil {
			before := cfg
			copySizes(&cfg, r.Config)
			if !reflect.DeepEqual(before, cfg) {
				differ = append(differ, sc)
			}
		}
	}
	if rerunScenarios["scale"] && r.Config.ScaleSetSize != 0 {
		cfg.ScaleSetSize = r.Config.ScaleSetSize // sizes sets only, which memory has not
	}
	cfg.Runs, cfg.More, cfg.Log, cfg.ModuleDir = r.Config.Runs, r.Config.More, r.Config.Log, r.Config.ModuleDir
	cfg.Backends, cfg.Scenarios = r.Config.Backends, r.Config.Scenarios
	r.Config = cfg
	// The report renders the configured backends and scenarios: those of
	// both runs.
	backends := slices.Clone(old.Config.Backends)
	for _, b := range r.Config.Backends {
		if !slices.Contains(backends, b) {
			backends = append(backends, b)
		}
	}
	r.Config.Backends = backends
	for b, v := range old.Machine.Backends {
		if _, ok := r.Machine.Backends[b]; !ok {
			if r.Machine.Backends == nil {
				r.Machine.Backends = map[string]string{}
			}
			r.Machine.Backends[b] = v
		}
	}
	if len(old.Config.Scenarios) == 0 || len(r.Config.Scenarios) == 0 {
		r.Config.Scenarios = nil // all
	} else {
		for _, s := range old.Config.Scenarios {
			if !slices.Contains(r.Config.Scenarios, s) {
				r.Config.Scenarios = append(r.Config.Scenarios, s)
			}
		}
	}
	rerun := slices.Sorted(maps.Keys(ran))
	// Newest first: the older notes say where the kept results come from.
	note := fmt.Sprintf("%s re-measured at %s (%.0f s) and merged into the report of %s; the other results come from that report and the runs its notes name.",
		strings.Join(rerun, ", "), r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Seconds, old.Started.UTC().Format("2006-01-02 15:04 UTC"))
	if r.Config.Runs != old.Config.Runs {
		note += fmt.Sprintf(" The re-measured results are medians over %d runs, the others over %d; the text gives the re-measured run's count.", r.Config.Runs, old.Config.Runs)
	}
	if len(differ) > 0 {
		note += fmt.Sprintf(" The sizes of %s differ between the two runs; the text gives the re-measured run's, and report.json's runs the figures.", strings.Join(differ, ", "))
	}
	r.Notes = append([]string{note}, r.Notes...)
	for _, n := range old.Notes {
		if !slices.Contains(r.Notes, n) {
			r.Notes = append(r.Notes, n)
		}
	}
	r.Started, r.Seconds = old.Started, old.Seconds
}
