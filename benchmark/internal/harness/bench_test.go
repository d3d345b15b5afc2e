package harness

import (
	"encoding/json"
	"encoding/xml"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if code, ok := ChildMain(); ok { // a server_load child, re-executed
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}

// tiny is every scenario at sizes that run in seconds.
func tiny(backends ...string) Config {
	cfg := DefaultConfig()
	cfg.Runs = 1
	cfg.Backends = backends
	cfg.Changes = 3
	cfg.IdleConns, cfg.IdleServices = 6, 3
	cfg.IdleWindow = time.Second
	cfg.PickerBench, cfg.PickerTime = "Pick/^n=10$/;Throughput@60x;Versus", "100x" // @: a pattern's own -benchtime
	cfg.Rolls, cfg.RollServers = 4, 3
	cfg.Outage = time.Second
	cfg.TailDuration, cfg.TailBackends = time.Second, 4
	cfg.TailXDS = false // the xds module's own test runs its tail: cd benchmark/xds && go test ./...
	cfg.ScaleServices, cfg.ScaleInsts = 20, 200
	cfg.ScaleChanges = 3
	cfg.XDSChanges, cfg.XDSClients, cfg.XDSServices, cfg.XDSGoClients = 3, 20, 3, 1
	cfg.XDSEndpoints, cfg.XDSEDSClients = 200, 2
	cfg.HeteroPhase, cfg.HeteroRate = time.Second, 50
	return cfg
}

func metric(t *testing.T, rep *Report, scenario, backend, variant, name string) float64 {
	t.Helper()
	v, ok := rep.get(scenario, backend, variant, name)
	if !ok {
		t.Fatalf("report has no %s/%s/%s %s; results: %+v", scenario, backend, variant, name, rep.Results)
	}
	return v
}

// checkInvariants checks what must hold on any machine: the drain order
// loses no call, the outage loses no call and the client converges, and
// there is one upstream watch per service.
func checkInvariants(t *testing.T, rep *Report, backend string, cfg Config) {
	t.Helper()
	for _, f := range rep.Failures {
		t.Errorf("scenario %s on %s run %d failed: %s", f.Scenario, f.Backend, f.Run, f.Error)
	}
	has := func(s string) bool {
		return len(cfg.Scenarios) == 0 || strings.Contains(strings.Join(cfg.Scenarios, ","), s)
	}
	if has("propagation") {
		for _, v := range []string{"wayfinder", "poll500ms"} {
			if got := metric(t, rep, "propagation", backend, v, "changes"); got != float64(2*cfg.Changes) {
				t.Errorf("propagation %s changes = %v, want %d", v, got, 2*cfg.Changes)
			}
		}
	}
	if has("idle_load") {
		if got := metric(t, rep, "idle_load", backend, "wayfinder", "upstream_watches"); got != float64(cfg.IdleServices) {
			t.Errorf("idle_load upstream watches = %v, want one per service (%d)", got, cfg.IdleServices)
		}
		if got := metric(t, rep, "idle_load", backend, "wayfinder", "resolvers"); got != float64(cfg.IdleConns) {
			t.Errorf("idle_load resolvers = %v, want %d", got, cfg.IdleConns)
		}
		if got := metric(t, rep, "idle_load", backend, "poll500ms", "requests"); got == 0 {
			t.Errorf("idle_load: the polling baseline made no request; the counter cannot see requests")
		}
	}
	if has("rolling_restart") {
		if got := metric(t, rep, "rolling_restart", backend, "drain", "failed_calls"); got != 0 {
			res, _ := rep.Find("rolling_restart", backend, "drain")
			t.Errorf("rolling restart, drain order: %v failed calls, want 0; notes %v", got, res.Notes)
		}
		if got := metric(t, rep, "rolling_restart", backend, "drain", "restarts"); got != float64(cfg.Rolls) {
			t.Errorf("rolling restart: %v restarts, want %d", got, cfg.Rolls)
		}
	}
	if has("xds") && backend == "memory" {
		checkXDS(t, rep, cfg)
	}
	if has("outage") {
		if got := metric(t, rep, "outage", backend, "wayfinder", "failed_during_outage"); got != 0 {
			t.Errorf("outage: %v calls failed while the registry was down, want 0", got)
		}
		if got := metric(t, rep, "outage", backend, "wayfinder", "converged"); got != 1 {
			res, _ := rep.Find("outage", backend, "wayfinder")
			t.Errorf("outage: converged = %v, want 1; notes %v", got, res.Notes)
		}
		if got := metric(t, rep, "outage", backend, "wayfinder", "watch_fresh_after_ms"); got < 0 {
			t.Errorf("outage: the watch never became fresh again")
		}
	}
}

func TestRunMemory(t *testing.T) {
	cfg := tiny("memory")
	rep := Run(t, cfg)
	checkInvariants(t, rep, "memory", cfg)
	for _, s := range Scenarios() {
		if s == "server_load" {
			continue // has no memory variant: TestRunServerLoad
		}
		if len(rep.variants(s, "memory"))+len(rep.variants(s, "-")) == 0 {
			t.Errorf("report has no result for scenario %s", s)
		}
	}
	// Picks too are measured against round_robin in interleaved slices:
	// round_robin's own ratio is noise around 1, with its width.
	for _, m := range []string{"pick_n10_serial_ratio", "pick_n10_serial_ratio_ci95", "pick_n10_parallel_ratio"} {
		if got := metric(t, rep, "picker", "-", "round_robin", m); !(got >= 0) || math.IsInf(got, 0) {
			t.Errorf("picker: round_robin's %s to itself = %v, want a measured figure", m, got)
		}
	}
	// Throughput ratios are measured against round_robin in interleaved
	// slices, so round_robin's own is a noisy figure near 1, not 1: only
	// that it was measured is checked.
	for _, p := range []string{"round_robin", "wayfinder_p2c_ewma"} {
		if got := metric(t, rep, "picker", "-", p, "throughput_ratio"); !(got > 0) || math.IsInf(got, 0) {
			t.Errorf("picker: %s's throughput_ratio = %v, want a positive measured ratio", p, got)
		}
		// With its noise: the slices' 95% confidence half-width.
		if got := metric(t, rep, "picker", "-", p, "throughput_ratio_ci95"); !(got >= 0) || math.IsInf(got, 0) {
			t.Errorf("picker: %s's throughput_ratio_ci95 = %v, want a measured width", p, got)
		}
	}
	// Propagation's floor, gRPC handed the addresses directly, is
	// measured beside the watch.
	if got := metric(t, rep, "propagation", "memory", directVariant, "all_p50_ms"); !(got > 0) {
		t.Errorf("propagation: %s all_p50_ms = %v, want a measured latency", directVariant, got)
	}
	// Each Wayfinder policy was measured beside its built-in, those of
	// the separate xds module included.
	for _, a := range Alternatives {
		if got := metric(t, rep, "picker", "-", a.Wayfinder, "pick_n10_serial_vs_alt"); !(got > 0) {
			t.Errorf("picker: %s's pick_n10_serial_vs_alt = %v, want a positive ratio", a.Wayfinder, got)
		}
		if got := metric(t, rep, "picker", "-", a.Wayfinder, "throughput_vs_alt"); !(got > 0) {
			t.Errorf("picker: %s's throughput_vs_alt = %v, want a positive ratio", a.Wayfinder, got)
		}
	}
	for _, p := range []string{"round_robin", "wayfinder_p2c_ewma", "least_request_experimental", "ring_hash_experimental"} {
		if got := metric(t, rep, "slow_backend", "memory", p, "calls"); got == 0 {
			t.Errorf("slow_backend %s made no call", p)
		}
	}
	metric(t, rep, "scale", "memory", "20_services", "resolver_goroutines_per_service")
	metric(t, rep, "scale", "memory", "200_instances", "register_p50_ms")

	// The report round-trips and its charts are well-formed XML.
	dir := checkReport(t, rep, []string{"## Summary against the targets", "## 1. Propagation", "## 4. Against grpc-go's built-in policies", "## 8. Scale", "benchmarks/propagation.svg",
		"- ring_hash_experimental: `{\"ring_hash_experimental\":{\"requestHashHeader\":\"x-bench-key\"}}`; outside xDS"},
		"propagation.svg", "idle_load.svg", "picker.svg", "alternatives.svg", "rolling_restart.svg", "slow_backend.svg", "heterogeneous.svg")
	b, err := os.ReadFile(filepath.Join(dir, "benchmarks", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("report.json does not parse: %v", err)
	}
	if len(back.Results) != len(rep.Results) || back.Machine.Cores == 0 || back.Machine.GoVersion == "" {
		t.Errorf("report.json: %d results (want %d), machine %+v", len(back.Results), len(rep.Results), back.Machine)
	}
}

// TestRunHeterogeneous runs the heterogeneous scenario alone: every
// policy makes calls, and the report renders section 11, its summary row
// and chart. Where the policies send calls is not checked here: at these
// sizes, under -race on a loaded machine, the clients starve for seconds
// and shares are noise (seen: round_robin's servers receiving nothing in
// the measured second); the blending itself is tested on real servers in
// balancer/wrr and balancer/p2c.
func TestRunHeterogeneous(t *testing.T) {
	cfg := tiny("memory")
	cfg.Scenarios = []string{"heterogeneous"}
	rep := Run(t, cfg)
	checkInvariants(t, rep, "memory", cfg)
	for _, p := range heteroPolicies {
		if got := metric(t, rep, "heterogeneous", "memory", p.Variant, "calls"); got == 0 {
			t.Errorf("heterogeneous: %s made no call", p.Variant)
		}
		metric(t, rep, "heterogeneous", "memory", p.Variant, "half_sent_pct")
	}
	checkReport(t, rep, []string{"## 11. Heterogeneous backends (load reports)", "| p99 and success, heterogeneous backends", "benchmarks/heterogeneous.svg"}, "heterogeneous.svg")
}

// checkReport writes rep into a temporary directory, which it returns,
// and checks that benchmarks.md holds every string of wants and that
// each named chart is an SVG document.
func checkReport(t *testing.T, rep *Report, wants []string, charts ...string) string {
	t.Helper()
	dir := t.TempDir()
	md := filepath.Join(dir, "benchmarks.md")
	if err := rep.Write(filepath.Join(dir, "benchmarks"), md); err != nil {
		t.Fatalf("Write = %v", err)
	}
	page, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range wants {
		if !strings.Contains(string(page), want) {
			t.Errorf("benchmarks.md lacks %q", want)
		}
	}
	for _, name := range charts {
		svg, err := os.ReadFile(filepath.Join(dir, "benchmarks", name))
		if err != nil {
			t.Errorf("chart %s: %v", name, err)
			continue
		}
		var doc struct{ XMLName xml.Name }
		if err := xml.Unmarshal(svg, &doc); err != nil || doc.XMLName.Local != "svg" {
			t.Errorf("chart %s is not an SVG document: %v", name, err)
		}
	}
	return dir
}

// TestRunEtcd runs the scenarios that touch the registry most against a
// real etcd member, including stopping and restarting it, and etcd's own
// naming resolver beside Wayfinder's.
func TestRunEtcd(t *testing.T) {
	cfg := tiny("etcd")
	cfg.Scenarios = []string{"propagation", "idle_load", "rolling_restart", "outage"}
	rep := Run(t, cfg)
	checkInvariants(t, rep, "etcd", cfg)
	if v := rep.Machine.Backends["etcd"]; !strings.Contains(v, "3.") {
		t.Errorf("etcd version = %q, want the server's", v)
	}
	checkEtcdNaming(t, rep, cfg)
	checkEtcdNamingReport(t, rep)
}

// TestRunConsul runs the idle-load scenario on a real Consul server, with
// requests counted by the proxy in front of it.
func TestRunConsul(t *testing.T) {
	cfg := tiny("consul")
	cfg.Scenarios = []string{"idle_load"}
	rep := Run(t, cfg)
	checkInvariants(t, rep, "consul", cfg)
	// The blocking-query baseline shares nothing: one query per ClientConn.
	if got := metric(t, rep, "idle_load", "consul", "blocking", "upstream_watches"); got != float64(cfg.IdleConns) {
		t.Errorf("idle_load blocking: %v open queries, want one per ClientConn (%d)", got, cfg.IdleConns)
	}
}

// TestRunZooKeeper runs propagation, idle load and the outage on a real
// ZooKeeper, with requests counted by the frame-counting proxy.
func TestRunZooKeeper(t *testing.T) {
	cfg := tiny("zookeeper")
	cfg.Scenarios = []string{"propagation", "idle_load", "outage"}
	rep := Run(t, cfg)
	checkInvariants(t, rep, "zookeeper", cfg)
	if v := rep.Machine.Backends["zookeeper"]; !strings.Contains(v, "3.") {
		t.Errorf("zookeeper version = %q, want the server's", v)
	}
	// The proxy counts on the wire: an idle client still pings its session.
	if got := metric(t, rep, "idle_load", "zookeeper", "wayfinder", "upstream_watches"); got != float64(cfg.IdleServices) {
		t.Errorf("idle_load: %v upstream watches, want one per service (%d)", got, cfg.IdleServices)
	}
}

func TestRecordsFailures(t *testing.T) {
	cfg := tiny("memory")
	cfg.Scenarios = []string{"picker"}
	cfg.PickerBench = "NoSuchBenchmark"
	rep := Run(t, cfg)
	if len(rep.Failures) != 1 || rep.Failures[0].Scenario != "picker" {
		t.Fatalf("Run with a picker benchmark that does not exist: failures %+v, want one for picker", rep.Failures)
	}
}

func TestPickerSamples(t *testing.T) {
	out := []byte(`goos: linux
BenchmarkPick/n=10/round_robin/serial-2         	1000000	        10.00 ns/op	       0 B/op	       0 allocs/op
BenchmarkPick/n=10/wayfinder_p2c_ewma/serial-2  	1000000	        25.00 ns/op	       0 B/op	       0 allocs/op
BenchmarkThroughput/round_robin-2               	  10000	    100000 ns/op
BenchmarkThroughput/wayfinder_p2c_ewma-2        	  10000	     80000 ns/op
PASS
`)
	ss, err := pickerSamples(parseBench(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 2 || ss[0].Variant != "round_robin" {
		t.Fatalf("pickerSamples = %+v, want round_robin then wayfinder_p2c_ewma", ss)
	}
	p := ss[1].Metrics
	if p["pick_n10_serial_ratio"] != 2.5 || p["throughput_ratio"] != 1.25 || p["throughput_calls_s"] != 12500 {
		t.Errorf("p2c metrics = %v, want pick ratio 2.5, throughput ratio 1.25, 12500 calls/s", p)
	}
	paired := []byte("BenchmarkThroughput/wayfinder_p2c_ewma-2 \t 10000\t 80000 ns/op\t 0.9700 x_round_robin\t 0.02000 x_round_robin_ci95\n")
	pr := parseBench(paired)
	if pr["ns/op"]["Throughput/wayfinder_p2c_ewma"] != 80000 || pr["x_round_robin"]["Throughput/wayfinder_p2c_ewma"] != 0.97 {
		t.Errorf("parseBench = %v; want 80000 ns/op and 0.97 x_round_robin", pr)
	}
	f := parseBench(out)
	f["x_round_robin"] = pr["x_round_robin"]
	f["x_round_robin_ci95"] = pr["x_round_robin_ci95"]
	ss, _ = pickerSamples(f)
	if got := ss[1].Metrics["throughput_ratio"]; got != 0.97 {
		t.Errorf("throughput_ratio with a paired figure = %v, want it (0.97), not the ratio of ns/op", got)
	}
	if got := ss[1].Metrics["throughput_ratio_ci95"]; got != 0.02 {
		t.Errorf("throughput_ratio_ci95 = %v, want the paired run's 0.02", got)
	}
	vs := parseBench([]byte(`BenchmarkPick/n=10/round_robin/serial-2 	1000000	 10.00 ns/op	 0 B/op	 0 allocs/op
BenchmarkPick/n=10/wayfinder_p2c_ewma/serial-2 	1000000	 25.00 ns/op	 0 B/op	 0 allocs/op	 2.400 x_round_robin	 0.1000 x_round_robin_ci95
BenchmarkPick/n=10/least_request_experimental/serial-2 	1000000	 100.0 ns/op	 72 B/op	 3 allocs/op
BenchmarkVersus/wayfinder_p2c_ewma-2 	 10000	 80000 ns/op	 1.100 x_alternative	 0.0300 x_alternative_ci95
`))
	ss, _ = pickerSamples(vs)
	i := slices.IndexFunc(ss, func(s Sample) bool { return s.Variant == "wayfinder_p2c_ewma" })
	j := slices.IndexFunc(ss, func(s Sample) bool { return s.Variant == "least_request_experimental" })
	if i < 0 || j < 0 {
		t.Fatalf("pickerSamples = %+v, want p2c and least_request", ss)
	}
	if m := ss[i].Metrics; m["pick_n10_serial_vs_alt"] != 0.25 || m["throughput_vs_alt"] != 1.1 || m["alt_pick_n10_serial_ns"] != 100 {
		t.Errorf("p2c metrics = %v, want pick_n10_serial_vs_alt 0.25, throughput_vs_alt 1.1, alt_pick_n10_serial_ns 100", m)
	}
	if m := ss[i].Metrics; m["pick_n10_serial_ratio"] != 2.4 || m["pick_n10_serial_ratio_ci95"] != 0.1 {
		t.Errorf("p2c pick ratio = %v ± %v, want the interleaved 2.4 ± 0.1, not the ratio of ns/op (2.5)", m["pick_n10_serial_ratio"], m["pick_n10_serial_ratio_ci95"])
	}
	if m := ss[i].Metrics; m["throughput_vs_alt_ci95"] != 0.03 {
		t.Errorf("p2c throughput_vs_alt_ci95 = %v, want 0.03", m["throughput_vs_alt_ci95"])
	}
	if m := ss[j].Metrics; m["pick_n10_serial_bop"] != 72 || m["pick_n10_serial_allocs"] != 3 {
		t.Errorf("least_request metrics = %v, want 72 B/op and 3 allocs/op", m)
	}
	if _, err := pickerSamples(parseBench([]byte("PASS\n"))); err == nil {
		t.Errorf("pickerSamples(no benchmarks) = nil error, want one")
	}
}

func TestStats(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median(3,1,2) = %v, want 2", got)
	}
	if got := median([]float64{4, 1, 2, 3}); got != 2.5 {
		t.Errorf("median(4,1,2,3) = %v, want 2.5", got)
	}
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("percentile(1..100ms, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	rs := merge("s", "b", [][]Sample{
		{{Variant: "x", Metrics: map[string]float64{"m": 1}}},
		{{Variant: "x", Metrics: map[string]float64{"m": 5}}},
		{{Variant: "x", Metrics: map[string]float64{"m": 3}}},
	})
	if len(rs) != 1 || rs[0].Metrics["m"] != 3 || len(rs[0].Runs) != 3 {
		t.Errorf("merge = %+v, want one result with median 3 over 3 runs", rs)
	}
}

func TestMerge(t *testing.T) {
	old := &Report{Started: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Seconds: 1700,
		Config:  Config{Backends: []string{"memory", "consul", "etcd"}, PickerTime: "200ms", TailDuration: 10 * time.Second},
		Machine: Machine{Backends: map[string]string{"consul": "Consul v1"}},
		Results: []Result{
			{Scenario: "picker", Backend: "-", Variant: "round_robin", Metrics: map[string]float64{"x": 1}},
			{Scenario: "idle", Backend: "consul", Variant: "watch", Metrics: map[string]float64{"y": 2}},
			{Scenario: "picker", Backend: "other", Variant: "round_robin", Metrics: map[string]float64{"x": 5}},
		},
		Failures: []Failure{{Scenario: "outage", Backend: "etcd", Error: "old"}},
		Notes:    []string{"hand-written note"},
	}
	rep := &Report{Started: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC),
		Config:  Config{Backends: []string{"memory"}, Scenarios: []string{"picker"}, PickerTime: "1s", TailDuration: 30 * time.Second},
		Results: []Result{{Scenario: "picker", Backend: "-", Variant: "round_robin", Metrics: map[string]float64{"x": 3}}}}
	rep.Merge(old)
	if !slices.Equal(rep.Config.Backends, []string{"memory", "consul", "etcd"}) || rep.Config.Scenarios != nil {
		t.Errorf("merged config: backends %v, scenarios %v; want both runs' backends and all scenarios", rep.Config.Backends, rep.Config.Scenarios)
	}
	if rep.Config.PickerTime != "1s" || rep.Config.TailDuration != 10*time.Second {
		t.Errorf("merged config: picker time %q, tail duration %v; want the new run's for picker (1s) and the old run's for the rest (10s)", rep.Config.PickerTime, rep.Config.TailDuration)
	}
	if got := rep.Machine.Backends["consul"]; got != "Consul v1" {
		t.Errorf("merged machine: consul version %q, want the old run's", got)
	}
	if res, _ := rep.Find("picker", "-", "round_robin"); res.Metrics["x"] != 3 {
		t.Errorf("picker result = %v, want the new run's (x=3)", res.Metrics)
	}
	if _, ok := rep.Find("idle", "consul", "watch"); !ok {
		t.Error("idle result from the old report was dropped")
	}
	if res, ok := rep.Find("picker", "other", "round_robin"); !ok || res.Metrics["x"] != 5 {
		t.Error("picker result for a backend the new run did not measure was dropped")
	}
	if len(rep.Results) != 3 || len(rep.Failures) != 1 {
		t.Errorf("merged %d results and %d failures, want 3 and 1", len(rep.Results), len(rep.Failures))
	}
	if len(rep.Notes) != 2 || !strings.Contains(rep.Notes[0], "picker/-") || !strings.Contains(rep.Notes[0], "2026-11-01") || !strings.Contains(rep.Notes[0], "sizes of picker differ") || rep.Notes[1] != "hand-written note" {
		t.Errorf("notes = %q, want the provenance note then the old hand-written one", rep.Notes)
	}
}

// checkXDS checks what the xds scenario must show on any machine: every
// change measured in every variant; one upstream watch per service for
// all the xDS server's clients, every client's stream open, no NACK;
// the server wrote bytes for each change; and the report's section has
// each table.
func checkXDS(t *testing.T, rep *Report, cfg Config) {
	t.Helper()
	for _, v := range []string{"resolver", "xds_go", "grpc_go_clients", "raw_ads_clients", "eds_sotw", "eds_delta"} {
		if got := metric(t, rep, "xds", "memory", v, "changes"); got != float64(cfg.XDSChanges) {
			t.Errorf("xds %s: %v changes, want %d", v, got, cfg.XDSChanges)
		}
	}
	if got := metric(t, rep, "xds", "memory", "raw_ads_clients", "upstream_watches"); got != float64(cfg.XDSServices) {
		t.Errorf("xds: %v upstream watches for %d clients, want one per service (%d)", got, cfg.XDSClients, cfg.XDSServices)
	}
	if got := metric(t, rep, "xds", "memory", "raw_ads_clients", "streams"); got != float64(cfg.XDSClients) {
		t.Errorf("xds: %v streams, want one per client (%d)", got, cfg.XDSClients)
	}
	if got := metric(t, rep, "xds", "memory", "raw_ads_clients", "nacks"); got != 0 {
		t.Errorf("xds: %v NACKs, want 0", got)
	}
	for _, v := range []string{"raw_ads_clients", "eds_sotw", "eds_delta"} {
		if got := metric(t, rep, "xds", "memory", v, "bytes_per_change"); !(got > 0) {
			t.Errorf("xds %s: %v bytes per change, want some", v, got)
		}
	}
	// A 200-endpoint assignment is larger than 200 bytes whatever the
	// protocol: the clients decoded the whole service.
	for _, v := range []string{"eds_sotw", "eds_delta"} {
		if got := metric(t, rep, "xds", "memory", v, "eds_bytes_per_client"); got < float64(cfg.XDSEndpoints) {
			t.Errorf("xds %s: %v EDS bytes per client, want at least one per endpoint (%d)", v, got, cfg.XDSEndpoints)
		}
	}
	md := rep.Markdown("benchmarks", rep.Charts())
	for _, want := range []string{"## 12. xDS server", "| xDS → grpc-go |", "| upstream watches open | " + fmtNum(float64(cfg.XDSServices)) + " |", "Delta against State of the World"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestRunXDS runs the xds scenario alone at tiny sizes (TestRunMemory
// runs it among all the others).
func TestRunXDS(t *testing.T) {
	cfg := tiny("memory")
	cfg.Scenarios = []string{"xds"}
	rep := Run(t, cfg)
	checkInvariants(t, rep, "memory", cfg)
}
