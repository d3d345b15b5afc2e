package harness

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// get returns a median metric, and whether it was measured.
func (r *Report) get(scenario, backend, variant, metric string) (float64, bool) {
	res, ok := r.Find(scenario, backend, variant)
	if !ok {
		return 0, false
	}
	v, ok := res.Metrics[metric]
	return v, ok
}

// Charts returns the SVG charts of the report by file name.
func (r *Report) Charts() map[string]string {
	charts := map[string]string{}
	backends := r.Config.Backends
	if g := r.groups(backends, func(be string) []bar {
		var bars []bar
		for _, v := range []struct{ variant, metric, label string }{
			{"wayfinder", "all_p50_ms", "Wayfinder p50"},
			{"wayfinder", "all_p99_ms", "Wayfinder p99"},
			{"poll500ms", "all_p50_ms", "poll 500 ms p50"},
			{"poll500ms", "all_p99_ms", "poll 500 ms p99"},
			{"blocking", "all_p50_ms", "blocking query/conn p50"},
			{"blocking", "all_p99_ms", "blocking query/conn p99"},
			{namingVariant, "all_p50_ms", "etcd naming p50"},
			{namingVariant, "all_p99_ms", "etcd naming p99"},
			{directVariant, "all_p50_ms", "floor (no registry) p50"},
			{directVariant, "all_p99_ms", "floor (no registry) p99"},
		} {
			if x, ok := r.get("propagation", be, v.variant, v.metric); ok {
				bars = append(bars, bar{Label: v.label, Value: x, Text: fmtNum(x) + " ms"})
			}
		}
		return bars
	}); len(g) > 0 {
		charts["propagation.svg"] = barChart("Propagation: Register/Deregister to picker", "milliseconds, median of runs", true, 0, g)
	}
	if g := r.groups(backends, func(be string) []bar {
		var bars []bar
		if x, ok := r.get("idle_load", be, "wayfinder", "requests_per_service_min_upper"); ok {
			n, _ := r.get("idle_load", be, "wayfinder", "requests")
			txt := fmtNum(x)
			if n == 0 {
				txt = "< " + fmtNum(x) + " (none seen)"
			}
			bars = append(bars, bar{Label: "Wayfinder", Value: x, Text: txt})
		}
		if x, ok := r.get("idle_load", be, "poll500ms", "requests_per_service_min"); ok {
			bars = append(bars, bar{Label: "poll 500 ms", Value: x})
		}
		for _, v := range []struct{ variant, label string }{{"blocking", "blocking query/conn"}, {namingVariant, "etcd naming (watch/conn)"}} {
			if x, ok := r.get("idle_load", be, v.variant, "requests_per_service_min_upper"); ok {
				n, _ := r.get("idle_load", be, v.variant, "requests")
				txt := fmtNum(x)
				if n == 0 {
					txt = "< " + fmtNum(x) + " (none seen)"
				}
				bars = append(bars, bar{Label: v.label, Value: x, Text: txt})
			}
		}
		return bars
	}); len(g) > 0 {
		charts["idle_load.svg"] = barChart("Idle registry load: 100 ClientConns, 10 services", "requests per watched service per minute", true, 0, g)
	}
	if svg, ok := r.etcdNamingChart(); ok {
		charts["etcd_naming.svg"] = svg
	}
	if rs := r.variants("picker", "-"); len(rs) > 0 {
		var g []barGroup
		for _, m := range []struct{ metric, label string }{
			{"pick_n10_serial_ratio", "pick, 10 endpoints, serial"},
			{"pick_n10_parallel_ratio", "pick, 10 endpoints, parallel"},
			{"pick_n1000_serial_ratio", "pick, 1000 endpoints, serial"},
			{"throughput_ratio", "RPC throughput (higher is better)"},
		} {
			var bars []bar
			for _, res := range rs {
				if x, ok := res.Metrics[m.metric]; ok {
					bars = append(bars, bar{Label: res.Variant, Value: x, Text: fmt.Sprintf("%.2f×", x)})
				}
			}
			if len(bars) > 0 {
				g = append(g, barGroup{Label: m.label, Bars: bars})
			}
		}
		charts["picker.svg"] = barChart("Picker cost and throughput as ratios to grpc round_robin", "ratio to round_robin (dashed line = 1)", false, 1, g)
	}
	var alts []barGroup
	for _, a := range Alternatives {
		res, ok := r.Find("picker", "-", a.Wayfinder)
		if !ok {
			continue
		}
		var bars []bar
		for _, m := range []struct{ metric, label string }{
			{"pick_n10_serial_vs_alt", "pick, 10, serial"},
			{"pick_n10_parallel_vs_alt", "pick, 10, parallel"},
			{"pick_n1000_serial_vs_alt", "pick, 1000, serial"},
			{"pick_n1000_parallel_vs_alt", "pick, 1000, parallel"},
		} {
			if x, ok := res.Metrics[m.metric]; ok {
				bars = append(bars, bar{Label: m.label, Value: x, Text: fmt.Sprintf("%.2f×", x)})
			}
		}
		if len(bars) > 0 {
			alts = append(alts, barGroup{Label: a.Wayfinder + " / " + a.Alternative, Bars: bars})
		}
	}
	if len(alts) > 0 {
		charts["alternatives.svg"] = barChart("Wayfinder's pick cost as a ratio to grpc-go's built-in", "Wayfinder ns/op ÷ built-in ns/op, same run (dashed line = 1; lower is better)", true, 1, alts)
	}
	if g := r.groups(backends, func(be string) []bar {
		var bars []bar
		for _, v := range []struct{ variant, label string }{{"drain", "Wayfinder drain"}, {"naive", "seed: stop, then deregister"}} {
			if x, ok := r.get("rolling_restart", be, v.variant, "failed_calls"); ok {
				bars = append(bars, bar{Label: v.label, Value: x})
			}
		}
		return bars
	}); len(g) > 0 {
		charts["rolling_restart.svg"] = barChart(fmt.Sprintf("Rolling restart under load: failed calls over %d restarts", r.Config.Rolls), "failed calls, median of runs", false, 0, g)
	}
	if rs := r.variants("slow_backend", "memory"); len(rs) > 0 {
		var bars []bar
		for _, res := range rs {
			bars = append(bars, bar{Label: res.Variant, Value: res.Metrics["success_pct"], Text: fmt.Sprintf("%.3f %%", res.Metrics["success_pct"])})
		}
		charts["slow_backend.svg"] = barChart(fmt.Sprintf("1 of %d backends stalls at %v: success at a %v deadline", r.Config.TailBackends, r.Config.TailStall, r.Config.TailDeadline),
			"per cent of calls that succeeded (dashed line = 99.9 %)", false, 99.9, []barGroup{{Label: "policy", Bars: bars}})
	}
	r.serverLoadCharts(charts)
	r.heterogeneousChart(charts)
	return charts
}

func (r *Report) groups(backends []string, f func(string) []bar) []barGroup {
	var g []barGroup
	for _, be := range backends {
		if bars := f(be); len(bars) > 0 {
			g = append(g, barGroup{Label: be, Bars: bars})
		}
	}
	return g
}

func (r *Report) variants(scenario, backend string) []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Scenario == scenario && res.Backend == backend {
			out = append(out, res)
		}
	}
	return out
}

// ReadReport reads a report written by Write, to render it again.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// Write writes the report as dir/report.json, the charts as dir/*.svg,
// and the Markdown page as md, which links the charts relative to it.
func (r *Report) Write(dir, md string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	charts := r.Charts()
	for name, svg := range charts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(svg), 0o644); err != nil {
			return err
		}
	}
	rel, err := filepath.Rel(filepath.Dir(md), dir)
	if err != nil {
		rel = dir
	}
	return os.WriteFile(md, []byte(r.Markdown(filepath.ToSlash(rel), charts)), 0o644)
}

// check renders a target check.
func check(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// Markdown renders the report; chartDir is where the charts are,
// relative to the page. Each section of the page is written by a method
// of its own, in the order of the page; w writes to the page and img
// adds a chart if the report has it.
func (r *Report) Markdown(chartDir string, charts map[string]string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	img := func(name, alt string) {
		if _, ok := charts[name]; ok {
			w("![%s](%s/%s)\n\n", alt, chartDir, name)
		}
	}
	r.introMarkdown(w, chartDir)
	r.failuresSection(w)
	r.summarySection(w)
	r.propagationSection(w, img)
	r.idleLoadSection(w, img)
	r.pickerSection(w, img)
	r.alternativesSection(w, img)
	r.rollingRestartSection(w, img)
	r.outageSection(w)
	r.slowBackendSection(w, img)
	r.scaleSection(w)
	r.etcdNamingSection(w, img)
	r.serverLoadSection(w, img)
	r.heterogeneousSection(w, img)
	r.xdsServerSection(w)
	r.methodSection(w)
	return b.String()
}

// introMarkdown writes the title, when and where the report was
// measured, and how to run it again.
func (r *Report) introMarkdown(w func(string, ...any), chartDir string) {
	m := r.Machine
	w("# Benchmarks\n\n")
	w("Generated by `make bench` (benchmark/cmd/wfbench) on %s; the run took %s. ",
		r.Started.UTC().Format("2006-01-02 15:04 UTC"), (time.Duration(r.Seconds) * time.Second).String())
	w("Every figure is the median over %d runs; every run measures Wayfinder and its baseline side by side, against real servers on loopback. ", r.Config.Runs)
	w("The raw figures of every run are in [report.json](%s/report.json).\n\n", chartDir)
	w("**Machine:** %d cores (%s), %s/%s, %s", m.Cores, orDash(m.CPU), m.GOOS, m.GOARCH, m.GoVersion)
	for _, be := range r.Config.Backends {
		w("; %s: %s", be, m.Backends[be])
	}
	w(". The machine is shared with other work, so absolute figures are noisy; the ratios to the baselines measured in the same run are what to compare.\n\n")
	for _, n := range r.Notes {
		w("**Note:** %s\n\n", n)
	}
	w("Re-run: `make bench` (the full run), or a quick one:\n\n")
	w("    go run ./benchmark/cmd/wfbench -runs 1 -outage 5s -tail 5s -idle-window 5s -changes 10\n\n")
	if slices.Contains(r.Config.Backends, "kubernetes") {
		w("The Kubernetes results come from `make bench-kubernetes` (benchmark/kubernetes/cmd/wfbench-k8s, in a module of its own, so that wfbench never imports client-go), which runs propagation, idle_load and scale on a real kube-apiserver and merges them into this report.\n\n")
	}
}

// failuresSection lists the runs that failed, if any.
func (r *Report) failuresSection(w func(string, ...any)) {
	if len(r.Failures) == 0 {
		return
	}
	w("## Runs that failed\n\n| scenario | backend | run | error |\n|---|---|---|---|\n")
	for _, f := range r.Failures {
		w("| %s | %s | %d | %s |\n", f.Scenario, f.Backend, f.Run, mdEscape(firstLine(f.Error)))
	}
	w("\n")
}

// summarySection is the table of each target: Wayfinder's figure, its
// baseline's and the best alternative's, measured in the same run.
func (r *Report) summarySection(w func(string, ...any)) {
	w("## Summary against the targets\n\n| what | backend | measured | baseline (same run) | ratio | best alternative (same run) | target | |\n|---|---|---|---|---|---|---|---|\n")
	r.propagationSummary(w)
	r.idleLoadSummary(w)
	r.rollingRestartSummary(w)
	r.outageSummary(w)
	r.slowBackendSummary(w)
	r.heterogeneousSummary(w)
	r.pickerSummary(w)
	w("\n")
}

// propagationSummary adds each backend's propagation p99 to the summary.
func (r *Report) propagationSummary(w func(string, ...any)) {
	for _, be := range r.Config.Backends {
		target, hasTarget := map[string]float64{"memory": 1, "etcd": 20, "consul": 100}[be]
		if x, ok := r.get("propagation", be, "wayfinder", "all_p99_ms"); ok {
			p, _ := r.get("propagation", be, "poll500ms", "all_p99_ms")
			alt := "—"
			if a, ok := r.get("propagation", be, "blocking", "all_p99_ms"); ok {
				alt = fmt.Sprintf("%s ms, blocking query per ClientConn (%s× Wayfinder's)", fmtNum(a), fmtNum(a/x))
			}
			if a, ok := r.get("propagation", be, namingVariant, "all_p99_ms"); ok {
				alt = fmt.Sprintf("%s ms, etcd's naming resolver (%s× Wayfinder's)", fmtNum(a), fmtNum(a/x))
			}
			if f, ok := r.get("propagation", be, directVariant, "all_p99_ms"); ok {
				floor := fmt.Sprintf("floor, gRPC handed the addresses with no registry: %s ms", fmtNum(f))
				if alt == "—" {
					alt = floor
				} else {
					alt += "; " + floor
				}
			}
			tgt, met := "none set", ""
			if hasTarget {
				tgt, met = "≤ "+fmtNum(target)+" ms", check(x <= target)
			}
			w("| propagation p99 | %s | %s ms | %s ms | %s× faster | %s | %s | %s |\n", be, fmtNum(x), fmtNum(p), fmtNum(p/x), alt, tgt, met)
		}
	}
}

// idleLoadSummary adds each backend's idle requests per service to the
// summary.
func (r *Report) idleLoadSummary(w func(string, ...any)) {
	for _, be := range r.Config.Backends {
		if x, ok := r.get("idle_load", be, "wayfinder", "requests_per_service_min_upper"); ok {
			n, _ := r.get("idle_load", be, "wayfinder", "requests")
			p, _ := r.get("idle_load", be, "poll500ms", "requests_per_service_min")
			ws, _ := r.get("idle_load", be, "wayfinder", "watches_per_service")
			meas := fmtNum(x) + "/min"
			ratio := fmt.Sprintf("%s× less", fmtNum(p/x))
			if n == 0 {
				meas = "< " + meas + " (0 seen)"
				ratio = "≥ " + ratio
			}
			alt := r.idleLoadAlternative(be)
			w("| idle requests per service | %s | %s; %s upstream watch(es) per service | %s/min | %s | %s | ≥ 500× less, 1 watch per service | %s |\n",
				be, meas, fmtNum(ws), fmtNum(p), ratio, alt, check(p/x >= 500 && ws == 1))
		}
	}
}

// idleLoadAlternative is the summary's alternative to Wayfinder at rest
// on backend be: etcd's naming resolver (etcd), a blocking query per
// ClientConn (Consul), or none.
func (r *Report) idleLoadAlternative(be string) string {
	if a, ok := r.get("idle_load", be, namingVariant, "requests_per_service_min_upper"); ok {
		bn, _ := r.get("idle_load", be, namingVariant, "requests")
		bw, _ := r.get("idle_load", be, namingVariant, "server_watchers_per_service")
		txt := fmtNum(a) + "/min"
		if bn == 0 {
			txt = "< " + txt + " (0 seen)"
		}
		return fmt.Sprintf("%s; %s watches per service on etcd (etcd's naming resolver, a watch per ClientConn)", txt, fmtNum(bw))
	}
	if a, ok := r.get("idle_load", be, "blocking", "requests_per_service_min_upper"); ok {
		bn, _ := r.get("idle_load", be, "blocking", "requests")
		bw, _ := r.get("idle_load", be, "blocking", "watches_per_service")
		txt := fmtNum(a) + "/min"
		if bn == 0 {
			txt = "< " + txt + " (0 seen)"
		}
		return fmt.Sprintf("%s; %s open queries per service (blocking query per ClientConn)", txt, fmtNum(bw))
	}
	return "—"
}

// rollingRestartSummary adds each backend's failed calls in a rolling
// restart to the summary.
func (r *Report) rollingRestartSummary(w func(string, ...any)) {
	for _, be := range r.Config.Backends {
		if x, ok := r.get("rolling_restart", be, "drain", "failed_calls"); ok {
			p, _ := r.get("rolling_restart", be, "naive", "failed_calls")
			w("| failed calls, rolling restart | %s | %s | %s (seed order) | | — | 0 | %s |\n", be, fmtNum(x), fmtNum(p), check(x == 0))
		}
	}
}

// outageSummary adds each backend's failed calls, recovery and
// convergence after an outage to the summary.
func (r *Report) outageSummary(w func(string, ...any)) {
	for _, be := range r.Config.Backends {
		if x, ok := r.get("outage", be, "wayfinder", "failed_during_outage"); ok {
			fresh, _ := r.get("outage", be, "wayfinder", "watch_fresh_after_ms")
			conv, _ := r.get("outage", be, "wayfinder", "converged")
			w("| failed calls during a %v outage | %s | %s | | | — | 0 | %s |\n", r.Config.Outage, be, fmtNum(x), check(x == 0))
			change, _ := r.get("outage", be, "wayfinder", "change_reaches_picker_ms")
			w("| registry back → first fresh update (watch fresh / a change reaches the picker) | %s | %s ms / %s ms | | | — | ≤ 2000 ms | %s |\n", be, fmtNum(fresh), fmtNum(change), check(change >= 0 && change <= 2000))
			w("| converged after the outage | %s | %s | | | — | yes | %s |\n", be, yesNo(conv == 1), check(conv == 1))
		}
	}
}

// slowBackendSummary adds the success rates with one stalled backend to
// the summary.
func (r *Report) slowBackendSummary(w func(string, ...any)) {
	if x, ok := r.get("slow_backend", "memory", "wayfinder_p2c_ewma", "success_pct"); ok {
		p, _ := r.get("slow_backend", "memory", "round_robin", "success_pct")
		alt := "—"
		if a, ok := r.get("slow_backend", "memory", "least_request_experimental", "success_pct"); ok {
			alt = fmt.Sprintf("%.3f %% (least_request_experimental)", a)
		}
		w("| success, 1 of %d backends stalled | memory | %.3f %% (P2C-EWMA) | %.3f %% (round_robin) | | %s | ≥ 99.9 %% | %s |\n", r.Config.TailBackends, x, p, alt, check(x >= 99.9))
	}
	if x, ok := r.get("slow_backend", "memory", "wayfinder_outlier_ejection", "success_pct"); ok {
		p, _ := r.get("slow_backend", "memory", "round_robin_outlier_group", "success_pct")
		alt := "—"
		if a, ok := r.get("slow_backend", "memory", "outlier_detection_experimental", "success_pct"); ok {
			alt = fmt.Sprintf("%.3f %% (outlier_detection_experimental, section 7)", a)
		}
		w("| success, 1 of %d backends stalled, outlier ejection over round_robin | memory | %.3f %% | %.3f %% (round_robin) | | %s | none set | |\n", r.Config.TailBackends, x, p, alt)
	}
}

// propagationSection is section 1: register and deregister to calls, per
// backend and variant.
func (r *Report) propagationSection(w func(string, ...any), img func(name, alt string)) {
	w("## 1. Propagation latency\n\n")
	w("Time from `Register` (or `Deregister`) being called until a real ClientConn's round_robin picker sends calls to (or stops sending calls to) the instance, measured by calling continuously. The add side includes the new connection's set-up. The baseline is the 2019 seed's resolver, polling every 500 ms, over the same registry client, in the same run; changes are spaced at random (0–500 ms for the poller, so they fall anywhere in its cycle; 0–200 ms for the watch, so that Consul watches are not measured against their own 10 per second rate limit). On Consul a second baseline, *blocking*, is what the popular Consul resolvers for grpc-go do: a resolver of its own (benchmark/internal/harness/blocking.go) that runs one blocking query on `/v1/health/service/<name>?passing` per ClientConn, with the same 5 min wait as Wayfinder's driver, and hands gRPC every answer, changed or not; it shares nothing and dedupes nothing (section 2 shows what that costs at rest), spaced like the watch. On etcd a second baseline, *etcd_naming*, is etcd's own resolver, `go.etcd.io/etcd/client/v3/naming/resolver`, reading the same registrations with an etcd watch per ClientConn, spaced like the watch (section 9). *direct* is the floor, not an alternative: the same ClientConn options and servers with no registry in the path, a manual resolver handed the new address set as soon as `Register` (`Deregister`) returns, spaced like the watch; what it measures is gRPC's own work (the new connection's set-up, the picker) and the calls'. %d adds and %d removes per run and variant.\n\n", r.Config.Changes, r.Config.Changes)
	img("propagation.svg", "propagation latency chart")
	w("| backend | variant | register p50 / p90 / p99 / max (ms) | deregister p50 / p90 / p99 / max (ms) | all p99 (ms) |\n|---|---|---|---|---|\n")
	for _, be := range r.Config.Backends {
		for _, v := range []string{"wayfinder", "poll500ms", "blocking", namingVariant, directVariant} {
			res, ok := r.Find("propagation", be, v)
			if !ok {
				continue
			}
			q := func(p string) string {
				mm := res.Metrics
				return fmt.Sprintf("%s / %s / %s / %s", fmtNum(mm[p+"_p50_ms"]), fmtNum(mm[p+"_p90_ms"]), fmtNum(mm[p+"_p99_ms"]), fmtNum(mm[p+"_max_ms"]))
			}
			w("| %s | %s | %s | %s | %s |\n", be, v, q("register"), q("deregister"), fmtNum(res.Metrics["all_p99_ms"]))
		}
	}
	w("\n")
}

// idleLoadSection is section 2: requests to an idle registry.
func (r *Report) idleLoadSection(w func(string, ...any), img func(name, alt string)) {
	w("## 2. Idle registry load\n\n")
	w("%d ClientConns in one process watch %d services (one instance each) and stay idle for %v after all of them are connected. Requests are counted at the registry's door: by a counting reverse proxy on loopback in front of Consul (one per HTTP request), by client interceptors on the etcd client (one per unary call and per message sent on a stream), by a wrapper of the Kubernetes client's HTTP transport (one per HTTP request to the API server: a list, a watch, a Service read), and as Lookup/Watch calls for memory. Wayfinder shares one upstream watch per service through `resolver.Cache`; the baseline gives every ClientConn its own 500 ms poller, as the seed did. On Consul, *blocking* gives every ClientConn its own blocking-query loop (section 1): each holds one HTTP request open for its wait, so its upstream watches are the ClientConns, not the services; at rest with a 5 min wait it sends little in a short window, and its cost shows in the set-up requests, the open requests, and in every change, which each of its ClientConns' queries answers on its own (the pushes column counts its UpdateState calls in the window). On etcd, *etcd_naming* is etcd's own resolver (section 9): an etcd watch per ClientConn, counted on the server (`etcd_debugging_mvcc_watcher_total`), as Wayfinder's are on etcd. When Wayfinder or a baseline sends nothing in the window, the figure is an upper bound computed as if one request had been seen.\n\n", r.Config.IdleConns, r.Config.IdleServices, r.Config.IdleWindow)
	img("idle_load.svg", "idle load chart")
	w("| backend | variant | requests in window | per service per minute | set-up requests | upstream watches (Cache.Stats; open blocking queries; watches on the etcd server) |\n|---|---|---|---|---|---|\n")
	for _, be := range r.Config.Backends {
		for _, v := range []string{"wayfinder", "poll500ms", "blocking", namingVariant} {
			res, ok := r.Find("idle_load", be, v)
			if !ok {
				continue
			}
			mm := res.Metrics
			uw := "—"
			if x, ok := mm["upstream_watches"]; ok {
				uw = fmt.Sprintf("%s for %s services (%s Watch calls)", fmtNum(x), fmtNum(mm["services"]), fmtNum(mm["upstream_watch_calls"]))
				if v == "blocking" {
					uw = fmt.Sprintf("%s open blocking queries for %s services; %s pushes to gRPC in the window", fmtNum(x), fmtNum(mm["services"]), fmtNum(mm["pushes_in_window"]))
				}
				if v == namingVariant {
					uw = fmt.Sprintf("%s watches on the etcd server for %s services; %s pushes to gRPC in the window", fmtNum(x), fmtNum(mm["services"]), fmtNum(mm["pushes_in_window"]))
				} else if sw, ok := mm["server_watchers"]; ok && v == "wayfinder" {
					uw += fmt.Sprintf("; %s watches on the etcd server", fmtNum(sw))
				}
			}
			w("| %s | %s | %s | %s | %s | %s |\n", be, v, fmtNum(mm["requests"]), fmtNum(mm["requests_per_service_min"]), fmtNum(mm["setup_requests"]), uw)
		}
	}
	w("\n")
}

// pickerSection is section 3: pick cost and throughput against
// round_robin, and where P2C's pick spends its time.
func (r *Report) pickerSection(w func(string, ...any), img func(name, alt string)) {
	w("## 3. Picker cost and RPC throughput\n\n")
	w("From `go test -bench` with the patterns `%s` and `-benchtime %s` (a pattern's `@d` sets its own) on ./benchmark/internal/picker, run by the harness: every policy and grpc-go's `round_robin` are built through their registered builders in the same run. Pick is the cost of one Pick (plus Done) on ready endpoints, measured in 32 slices alternating with round_robin's picker over the same endpoints, so that its ratio, too, compares the same moments (round_robin's own row is against itself); throughput is real unary calls over loopback to 10 servers, 16 in flight, each policy measured in 32 slices alternating with round_robin's on the same servers, so its ratio compares the same moments of a shared machine; ± is the half-width of the 95%% confidence interval of the mean of the 32 slices' ratios, and round_robin's own row, against itself, shows the noise. Ratios are to round_robin: for pick cost lower is better, for throughput higher is better.\n\n", r.Config.PickerBench, r.Config.PickerTime)
	img("picker.svg", "picker cost chart")
	if rs := r.variants("picker", "-"); len(rs) > 0 {
		cols := []string{"pick_n10_serial", "pick_n10_parallel", "pick_n1000_serial", "pick_n1000_parallel"}
		w("| policy |")
		for _, c := range cols {
			w(" %s ns (ratio) |", strings.ReplaceAll(c, "_", " "))
		}
		w(" throughput calls/s (ratio) |\n|---|")
		for range cols {
			w("---|")
		}
		w("---|\n")
		for _, res := range rs {
			mm := res.Metrics
			w("| %s |", res.Variant)
			for _, c := range cols {
				if v, ok := mm[c+"_ns"]; ok {
					w(" %s (%.2f×%s) |", fmtNum(v), mm[c+"_ratio"], ci95(mm, c+"_ratio"))
				} else {
					w(" — |")
				}
			}
			if v, ok := mm["throughput_calls_s"]; ok {
				w(" %s (%.2f×%s) |\n", fmtNum(v), mm["throughput_ratio"], ci95(mm, "throughput_ratio"))
			} else {
				w(" — |\n")
			}
		}
	}
	w("\n")

	w("%s", p2cProfile)
}

// rollingRestartSection is section 5: failed calls while servers
// restart in turn.
func (r *Report) rollingRestartSection(w func(string, ...any), img func(name, alt string)) {
	w("## 5. Rolling restart under load\n\n")
	w("%d servers, restarted in turn on new ports, %d restarts per run, while 4 workers call every 2 ms through a Wayfinder resolver with no retry policy. *drain* is Wayfinder's server lifecycle (NOT_SERVING, deregister, wait until gone from the watch view, GracefulStop); *naive* is the seed's order: stop serving, then deregister.\n\n", r.Config.RollServers, r.Config.Rolls)
	img("rolling_restart.svg", "rolling restart chart")
	w("| backend | order | calls | failed | stop p50 / max (ms) |\n|---|---|---|---|---|\n")
	for _, be := range r.Config.Backends {
		for _, v := range []string{"drain", "naive"} {
			if res, ok := r.Find("rolling_restart", be, v); ok {
				mm := res.Metrics
				w("| %s | %s | %s | %s | %s / %s |\n", be, v, fmtNum(mm["calls"]), fmtNum(mm["failed_calls"]), fmtNum(mm["stop_p50_ms"]), fmtNum(mm["stop_max_ms"]))
			}
		}
	}
	w("\n")
}

// outageSection is section 6: calls, recovery and convergence across a
// registry outage.
func (r *Report) outageSection(w func(string, ...any)) {
	w("## 6. Registry outage\n\n")
	w("Three servers (Wayfinder's lifecycle) and a client calling them (4 workers, every 2 ms); then the whole registry goes down for %v: the Consul server and the etcd member are stopped (SIGTERM) and started again on the same ports and data; the memory store fails every call with ErrUnavailable. *fresh watch* is the time from the registry answering again until the client's watch has read it (`Cache.Watches`); *change* is the time until an instance registered at that moment receives calls. *All 4 back* is when a fresh `Lookup` shows the three servers and the new instance again (a restarted Consul restores registrations with critical TTL checks until their next heartbeat); *converged* then compares the client's set with that `Lookup`.\n\n", r.Config.Outage)
	w("| backend | failed / calls during the outage | failed / calls in the 2 s after | fresh watch (ms) | change reaches the picker (ms) | all 4 instances back in the registry, checked from 2 s after the return (ms) | converged |\n|---|---|---|---|---|---|---|\n")
	for _, be := range r.Config.Backends {
		if res, ok := r.Find("outage", be, "wayfinder"); ok {
			mm := res.Metrics
			w("| %s | %s / %s | %s / %s | %s | %s | %s | %s |\n", be, fmtNum(mm["failed_during_outage"]), fmtNum(mm["calls_during_outage"]),
				fmtNum(mm["failed_after_outage"]), fmtNum(mm["calls_after_outage"]), fmtNum(mm["watch_fresh_after_ms"]), fmtNum(mm["change_reaches_picker_ms"]),
				fmtNum(mm["registry_restored_ms"]), yesNo(mm["converged"] == 1))
		}
	}
	w("\n")
	for _, be := range r.Config.Backends {
		if res, ok := r.Find("outage", be, "wayfinder"); ok && len(res.Notes) > 0 {
			w("- %s: %s\n", be, mdEscape(strings.Join(res.Notes, "; ")))
		}
	}
	w("\n")
}

// slowBackendSection is section 7: the tail with one backend stalled.
func (r *Report) slowBackendSection(w func(string, ...any), img func(name, alt string)) {
	w("## 7. Slow-backend tail\n\n")
	w("%d servers; for each group of policies in turn, after a 1 s warm-up, one of them answers every call after %v, for %v. The group's ClientConns, one per policy, call at the same time from 8 closed-loop workers each, every call with a %v deadline and a random hash key (in the `x-bench-key` header and through `hash.WithKey`). A failed call counts at the deadline in the latency figures. Groups: round_robin, wayfinder_p2c_ewma and least_request_experimental; wayfinder_consistent_hash (hashing the header) and ring_hash_experimental, both of which send the stalled backend's keys to it by design. Each group's policies are configured as listed under the table.\n\n", r.Config.TailBackends, r.Config.TailStall, r.Config.TailDuration, r.Config.TailDeadline)
	if _, ok := r.Find("slow_backend", "memory", "outlier_detection_experimental"); ok {
		w("Then, in the same run, the pairs whose built-ins only the module `%s` builds (section 4): round_robin (as round_robin_wrr_group), wayfinder_weighted_round_robin and weighted_round_robin; round_robin (as round_robin_outlier_group), wayfinder_outlier_ejection and outlier_detection_experimental. wfbench builds that module's command `cmd/xdstail` and runs it at the same sizes, right after the groups above: the same measurement (`harness.Tail`) on the same servers' code, in a process and on an in-process registry of its own. Each group has a round_robin of its own, measured beside it, as the groups run one after another.\n\n", xdsModule)
	} else {
		w("The pairs of the module `%s` (weighted_round_robin, outlier_detection_experimental) were not measured in this report's runs (`wfbench -tail-xds=false`).\n\n", xdsModule)
	}
	img("slow_backend.svg", "slow backend chart")
	w("| policy | calls | failed | success | p50 / p99 / p99.9 / max (ms) |\n|---|---|---|---|---|\n")
	for _, res := range r.variants("slow_backend", "memory") {
		mm := res.Metrics
		w("| %s | %s | %s | %.3f %% | %s / %s / %s / %s |\n", res.Variant, fmtNum(mm["calls"]), fmtNum(mm["failed"]), mm["success_pct"], fmtNum(mm["p50_ms"]), fmtNum(mm["p99_ms"]), fmtNum(mm["p999_ms"]), fmtNum(mm["max_ms"]))
	}
	w("\n")
	listed := false
	for _, res := range r.variants("slow_backend", "memory") {
		if len(res.Notes) == 0 {
			continue
		}
		if !listed {
			w("Each policy's loadBalancingConfig, and why so:\n\n")
			listed = true
		}
		w("- %s: %s\n", res.Variant, strings.Join(res.Notes, "; "))
	}
	if listed {
		w("\n")
	}
}

// scaleSection is section 8: many services, many instances, and the way
// from a change to the picker.
func (r *Report) scaleSection(w func(string, ...any)) {
	w("## 8. Scale\n\n")
	w("On the memory backend. *Services*: one process watches %d services, one instance each; heap (after GC) and goroutines per watched service for Wayfinder's resolvers alone (on a fake ClientConn) and for real, connected ClientConns (which include gRPC's own transport goroutines and buffers); then the time from Register/Deregister of a second instance in one service until calls reach (leave) it. *Instances, to the resolver*: one service with %d instances whose addresses do not listen, watched by a resolver on a fake ClientConn; the time from Register/Deregister until the resolver hands it the new set of endpoints, with the process's CPU time and allocations per update (on the memory backend they include the in-process registry's share): the resolver's share of *One service with %d instances, to the picker* below, which measures the whole way with instances that serve.\n\n", r.Config.ScaleServices, r.Config.ScaleInsts, r.Config.ScaleInsts)
	scaleRes := r.variants("scale", "memory")
	for _, be := range r.Config.Backends {
		if be != "memory" {
			scaleRes = append(scaleRes, r.variants("scale", be)...)
		}
	}
	for _, res := range scaleRes {
		mm := res.Metrics
		if sets, ok := mm["sets"]; ok {
			scaleSetsTable(w, res, sets)
			continue
		}
		if _, ok := mm["services"]; ok {
			scaleServicesTable(w, mm)
		} else {
			scaleInstancesTable(w, mm)
		}
	}
	r.scalePickerMarkdown(w)
	r.pickerUpdateMarkdown(w)
}

// scaleSetsTable is the scale table of a backend that writes instances
// in sets (Kubernetes: EndpointSlices).
func scaleSetsTable(w func(string, ...any), res Result, sets float64) {
	mm := res.Metrics
	w("On %s, one Service with %s endpoints written as %s EndpointSlices of %s, as the EndpointSlice controller writes them, by a client of the API server in the same process; each change rewrites one slice (a different one each time) with one endpoint more, then without it, and is timed from the write until the resolver hands gRPC the new set, so the API server's write and watch fan-out are included. As for memory, the addresses do not listen, so this stops at the resolver's ClientConn; the policy's share up to the picker is *Update to the picker* below (5,000 endpoints). The memory of the watch is the heap (after GC) that the resolver, its Cache entry and the backend's watcher of the Service hold once they have the full set, with the client's connection to the API server, which this first watch opens.\n\n",
		res.Backend, fmtNum(mm["instances"]), fmtNum(sets), fmtNum(mm["instances"]/sets))
	w("| %s: one Service, %s endpoints in %s slices | |\n|---|---|\n", res.Backend, fmtNum(mm["instances"]), fmtNum(sets))
	w("| first full state (list of every slice) | %s ms |\n| memory of the watch (heap after GC) | %s KiB |\n| watch goroutines | %s |\n", fmtNum(mm["first_state_ms"]), fmtNum(mm["watch_heap_kib"]), fmtNum(mm["watch_goroutines"]))
	w("| one slice rewritten with an endpoint more → resolver state, p50 / p99 | %s / %s ms |\n| that slice rewritten without it → resolver state, p50 / p99 | %s / %s ms |\n",
		fmtNum(mm["register_p50_ms"]), fmtNum(mm["register_p99_ms"]), fmtNum(mm["deregister_p50_ms"]), fmtNum(mm["deregister_p99_ms"]))
	w("| process CPU per change (the writer's request included) | %s ms |\n| allocations per change | %s (%s KiB) |\n\n", fmtNum(mm["process_cpu_ms_per_update"]), fmtNum(mm["allocs_per_update"]), fmtNum(mm["alloc_kib_per_update"]))
}

// scaleServicesTable is the scale table of one process watching many
// services.
func scaleServicesTable(w func(string, ...any), mm map[string]float64) {
	w("| %s services | per watched service |\n|---|---|\n", fmtNum(mm["services"]))
	w("| resolver heap | %.2f KiB |\n| resolver goroutines | %.2f |\n| ClientConn heap | %.1f KiB |\n| ClientConn goroutines | %.2f |\n",
		mm["resolver_heap_kib_per_service"], mm["resolver_goroutines_per_service"], mm["clientconn_heap_kib_per_service"], mm["clientconn_goroutines_per_service"])
	w("| register → calls reach it, p50 / p99 | %s / %s ms |\n| deregister → calls leave it, p50 / p99 | %s / %s ms |\n\n",
		fmtNum(mm["register_p50_ms"]), fmtNum(mm["register_p99_ms"]), fmtNum(mm["deregister_p50_ms"]), fmtNum(mm["deregister_p99_ms"]))
}

// scaleInstancesTable is the scale table of one service with many
// instances, to the resolver.
func scaleInstancesTable(w func(string, ...any), mm map[string]float64) {
	w("| one service, %s instances, to the resolver | |\n|---|---|\n", fmtNum(mm["instances"]))
	w("| first full state | %s ms |\n| watch heap | %s KiB |\n| watch goroutines | %s |\n", fmtNum(mm["first_state_ms"]), fmtNum(mm["watch_heap_kib"]), fmtNum(mm["watch_goroutines"]))
	w("| register → resolver state, p50 / p99 | %s / %s ms |\n| deregister → resolver state, p50 / p99 | %s / %s ms |\n",
		fmtNum(mm["register_p50_ms"]), fmtNum(mm["register_p99_ms"]), fmtNum(mm["deregister_p50_ms"]), fmtNum(mm["deregister_p99_ms"]))
	if _, ok := mm["process_cpu_ms_per_update"]; ok {
		w("| process CPU per update | %s ms |\n| allocations per update | %s (%s KiB) |\n", fmtNum(mm["process_cpu_ms_per_update"]), fmtNum(mm["allocs_per_update"]), fmtNum(mm["alloc_kib_per_update"]))
	}
	w("\n")
}

// pickerUpdateMarkdown is the part of section 8 from BenchmarkUpdate:
// a policy's CPU per change, from the resolver's update to its picker.
func (r *Report) pickerUpdateMarkdown(w func(string, ...any)) {
	var upd []Result
	for _, res := range r.variants("picker", "-") {
		for k := range res.Metrics {
			if strings.HasPrefix(k, "update_") && strings.HasSuffix(k, "_ns") {
				upd = append(upd, res)
				break
			}
		}
	}
	if len(upd) > 0 {
		w("### Update to the picker\n\n")
		w("From `BenchmarkUpdate` in benchmark/internal/picker, run with the picker scenario: each policy on a fake ClientConn with 5,000 ready endpoints; each operation hands it the set with one endpoint more (whose new SubConn the fake drives through CONNECTING and READY to SERVING, each its own update, as gRPC does) or, the next time, without it, and ends when the policy has built the picker that includes or excludes it. This is the client's CPU per change after the resolver, without the network's connection set-up.\n\n")
		w("| policy | per update | B/op | allocs/op | ratio to round_robin |\n|---|---|---|---|---|\n")
		for _, res := range upd {
			for _, k := range sortedKeys(res.Metrics) {
				if !strings.HasPrefix(k, "update_") || !strings.HasSuffix(k, "_ns") {
					continue
				}
				base := strings.TrimSuffix(k, "_ns")
				mm := res.Metrics
				w("| %s (%s endpoints) | %s ms | %s | %s | %.2f× |\n", res.Variant, strings.TrimPrefix(base, "update_n"), fmtNum(mm[k]/1e6), fmtNum(mm[base+"_bop"]), fmtNum(mm[base+"_allocs"]), mm[base+"_ratio"])
			}
		}
		w("\n")
	}
}

// methodSection says how the figures were measured and what they
// cannot show.
func (r *Report) methodSection(w func(string, ...any)) {
	w("## Method and caveats\n\n")
	w("- Loops are bounded in count and time; only 127.0.0.1 is used. Servers are the real Consul and etcd binaries built by `make servers`; Consul runs as a single server with a data directory (not `-dev`), so that its state survives the outage, and etcd as a single member. The Kubernetes backend runs on a real kube-apiserver (built by `make servers`) over a real etcd, with no controller-manager: the API server rejects loopback addresses in EndpointSlices, so instances are written at addresses in 10.244.0.0/16 and the ClientConns dial through a dialer that maps each to its loopback server and refuses every other address.\n")
	w("- Benchmarks report figures and ratios; no unit test asserts a timing. `go test ./benchmark/internal/harness` runs every scenario at tiny sizes and checks only properties that must hold anywhere: no failed call in the drain order, convergence after an outage, one upstream watch per service, every scale_picker change reaching the picker.\n")
	w("- The fault suite (`make faults`, internal/testing/faults) checks the histories of ClientConns under registry restarts, leader kills, outages and churn.\n")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// pickerSummary adds the picker targets to the summary: the worst ratio
// among the measured sizes, so a target met is met at every size.
func (r *Report) pickerSummary(w func(string, ...any)) {
	worst := func(policy, mode string) (float64, string, bool) {
		var hi float64
		var at string
		found := false
		for _, n := range []string{"3", "10", "100", "1000", "10000"} {
			if v, ok := r.get("picker", "-", policy, "pick_n"+n+"_"+mode+"_ratio"); ok {
				if !found || v > hi {
					hi, at = v, n
				}
				found = true
			}
		}
		return hi, at, found
	}
	for _, t := range []struct {
		label, policy, alt, mode string
		target                   float64
	}{
		{"weighted round robin pick", "wayfinder_weighted_round_robin", "weighted_round_robin", "serial", 1.5},
		{"weighted round robin pick", "wayfinder_weighted_round_robin", "weighted_round_robin", "parallel", 1.5},
		{"P2C pick+done", "wayfinder_p2c_ewma", "least_request_experimental", "serial", 2},
		{"P2C pick+done", "wayfinder_p2c_ewma", "least_request_experimental", "parallel", 2},
	} {
		if v, n, ok := worst(t.policy, t.mode); ok {
			alt := "—"
			if a, an, ok := worst(t.alt, t.mode); ok {
				alt = fmt.Sprintf("%s: %s× (worst size: %s)", t.alt, fmtNum(a), an)
			}
			pm := map[string]float64{}
			if res, ok := r.Find("picker", "-", t.policy); ok {
				pm = res.Metrics
			}
			w("| %s, %s (worst size: %s endpoints) | - | %s×%s | round_robin | | %s | ≤ %s× | %s |\n", t.label, t.mode, n, fmtNum(v), ci95(pm, "pick_n"+n+"_"+t.mode+"_ratio"), alt, fmtNum(t.target), check(v <= t.target))
		}
	}
	if v, ok := r.get("picker", "-", "wayfinder_consistent_hash", "pick_n1000_serial_ns"); ok {
		alt := "—"
		if a, ok := r.get("picker", "-", "ring_hash_experimental", "pick_n1000_serial_ns"); ok {
			alt = fmt.Sprintf("ring_hash_experimental: %s ns", fmtNum(a))
		}
		w("| consistent hash pick, 1000 endpoints | - | %s ns | | | %s | ≤ 150 ns | %s |\n", fmtNum(v), alt, check(v <= 150))
	}
	var lo float64
	var minP string
	for _, res := range r.Results {
		if res.Scenario != "picker" || res.Variant == "round_robin" || isAlternative(res.Variant) {
			continue
		}
		if v, ok := res.Metrics["throughput_ratio"]; ok && (minP == "" || v < lo) {
			lo, minP = v, res.Variant
		}
	}
	if minP != "" {
		self, _ := r.get("picker", "-", "round_robin", "throughput_ratio")
		pm := map[string]float64{}
		if res, ok := r.Find("picker", "-", minP); ok {
			pm = res.Metrics
		}
		sm := map[string]float64{}
		if res, ok := r.Find("picker", "-", "round_robin"); ok {
			sm = res.Metrics
		}
		w("| RPC throughput, lowest Wayfinder policy (%s) | - | %s×%s | round_robin (against itself: %s×%s) | | — | ≥ 0.97× | %s |\n", minP, fmtNum(lo), ci95(pm, "throughput_ratio"), fmtNum(self), ci95(sm, "throughput_ratio"), check(lo >= 0.97))
	}
}

// p2cProfile is where P2C's serial pick spends its time, from the
// profiles of 2026-12-01 (pprof) and 2026-12-06/07 (callgrind); not
// re-measured by the harness: re-run the commands to refresh it.
const p2cProfile = "### Where P2C's serial pick spends its time\n\n" +
	"The target for P2C pick+done is 2× round_robin; it is not met. The latest count is in instructions (callgrind, `GOMAXPROCS=1`, the difference between 100,000 and 200,000 pick+done at 10 endpoints, 2026-12-07), which a shared machine does not disturb: round_robin 60, **P2C 316 (5.3×)**, least_request_experimental 1,119 (18.7×), outlier ejection 134 (2.2×). Of P2C's 316: the pick body 130 (two endpoints' loads, the coarse clock), the random word about 67 (`math/rand/v2`, ChaCha8 with its refills), the untimed Done about 20 plus 11 for calling it, the atomic updates about 18, the timed calls (1 in 16) about 30 spread over all picks. Wall-clock ratios in the table above depend on round_robin's own 5–7 ns pick, which shifts from run to run more than P2C's does.\n\n" +
	"Done since the first profile: the shared frame builds pickers in O(1) per SubConn event; a timed call's state comes from a pool and an untimed Done is a closure bound once (no allocation per call); the common load is inlined (2026-12-06). Tried and not kept (2026-12-07): a random word from a per-picker SplitMix64 counter, 235 instructions (3.9×), but it writes one shared cache line per pick, the cost that makes round_robin's parallel pick slow; the runtime's cheaper generator, reachable only by `go:linkname`, which a library must not impose on its users' builds. What is left to reach 2× changes what P2C sees: counting only sampled calls in flight, or picking without reading the clock, would make a stalled endpoint visible later, and the slow-backend tail (section 7) is what P2C is for.\n\n" +
	"The first profile, 2026-12-01 (pprof):\n\n" +
	"    cd benchmark/internal/picker\n" +
	"    go test -run '^$' -bench 'Pick/^n=10$/^wayfinder_p2c_ewma$/serial' -benchtime 3s -cpuprofile /tmp/p2c.cpu -o /tmp/picker.test .\n" +
	"    go tool pprof -top -focus 'picker.Pick.func1' /tmp/picker.test /tmp/p2c.cpu\n\n" +
	"| share of pick+done | where |\n|---|---|\n" +
	"| 20 % | the two `load` calls; 12 % is `math.Exp` in `cost`, for endpoints whose stamp is over decay/1000 old (a third of `cost` calls in this benchmark: an endpoint that lost its comparisons is not picked, so its stamp ages) |\n" +
	"| 16 % | the timed path, 1 call in 16: two exact clock reads, the Done closure (48 B, the 2-3 B/op), `observe` with its own `math.Exp` |\n" +
	"| 14 % | reading the coarse clock (`params.clock.Now()`, through the `timeSource` interface) |\n" +
	"| 10 % | `untimedDone` (the common Done) |\n" +
	"| 8 % | `rand.Uint64` (runtime chacha8) |\n" +
	"| 13 % | the benchmark loop and its indirect call of Done |\n" +
	"| 2 % | the pick_first child's Pick |\n\n" +
	"Tried then, measured as five interleaved runs of the old and new test binaries (`-benchtime 300ms`), and not kept:\n\n" +
	"- a per-endpoint memo of the decayed cost, keyed by (coarse time, stamp, cost) under a sequence lock, so that the picks of one clock tick share one `math.Exp`: `math.Exp` left the profile's `cost`, but pick+done went from 48.7 to 46.8 ns at 10 endpoints (0.96×) and 51.1 to 50.6 ns at 1,000 (0.99×), within this machine's noise; at 1,000 endpoints the pick is bound by touching two cold `stats` lines, which the memo makes larger;\n" +
	"- calling `*clock.Clock` directly instead of through the interface: within the same noise;\n" +
	"- timing 1 call in 64 instead of 16 when the clock is coarse: 0.8× (51.8 → 41.1 ns at 10 endpoints), but the mean age of timed calls in flight is how P2C sees a stalled endpoint before any call returns, and 4× fewer timed calls would see it about 4× later; not kept.\n\n"

func sortedKeys(m map[string]float64) []string {
	return slices.Sorted(maps.Keys(m))
}

// isAlternative reports whether variant is one of grpc-go's built-ins
// measured as an alternative.
func isAlternative(variant string) bool {
	for _, a := range Alternatives {
		if a.Alternative == variant {
			return true
		}
	}
	return false
}

// alternativesSection renders one subsection per pair of Alternatives:
// what the alternative is, how it was configured, and the ratios from
// the same run.
func (r *Report) alternativesSection(w func(string, ...any), img func(name, alt string)) {
	w("## 4. Against grpc-go's built-in policies\n\n")
	w("What a user would pick instead of each Wayfinder policy: grpc-go's built-in of the same purpose, configured as a user outside xDS would, built through its registered builder on the same fake ClientConn (pick cost) or dialled to the same 10 loopback servers (throughput) in the same `go test` run as the Wayfinder policy. *vs built-in* is the Wayfinder policy's figure divided by the built-in's: for pick cost lower is better (0.5× = half the cost), for throughput higher is better, measured in 32 slices alternating the two ClientConns (`BenchmarkVersus`), ± as in section 3. `weighted_round_robin` needs the ORCA protos of github.com/cncf/xds and `outlier_detection_experimental` registers only when google.golang.org/grpc/xds is imported (about 500 packages), so those two pairs run in the separate module `%s`, with their own round_robin, and never enter the library's build.\n\n", xdsModule)
	img("alternatives.svg", "pick cost against the built-ins chart")
	cols := []string{"pick_n10_serial", "pick_n10_parallel", "pick_n1000_serial", "pick_n1000_parallel"}
	for i, a := range Alternatives {
		w("### 4.%d %s: `%s` against `%s`\n\n", i+1, a.Purpose, a.Wayfinder, a.Alternative)
		w("`%s` configured with %s; measured in `%s`.\n\n", a.Alternative, a.Config, a.Module)
		res, ok := r.Find("picker", "-", a.Wayfinder)
		alt, altOK := r.Find("picker", "-", a.Alternative)
		if !ok || !altOK {
			w("Not measured in this report's runs: run `make bench`, or `wfbench -scenarios picker -merge`.\n\n")
			continue
		}
		mm := res.Metrics
		w("| | Wayfinder ns/op, B/op, allocs | built-in ns/op, B/op, allocs | vs built-in |\n|---|---|---|---|\n")
		for _, c := range cols {
			v, ok := mm[c+"_ns"]
			if !ok {
				continue
			}
			ratio := "—"
			if x, ok := mm[c+"_vs_alt"]; ok {
				ratio = fmt.Sprintf("%.2f×", x)
			}
			altTxt := "—"
			if x, ok := mm["alt_"+c+"_ns"]; ok {
				altTxt = fmt.Sprintf("%s, %s, %s", fmtNum(x), fmtNum(alt.Metrics[c+"_bop"]), fmtNum(alt.Metrics[c+"_allocs"]))
			}
			w("| %s | %s, %s, %s | %s | %s |\n", strings.ReplaceAll(c, "_", " "), fmtNum(v), fmtNum(mm[c+"_bop"]), fmtNum(mm[c+"_allocs"]), altTxt, ratio)
		}
		if x, ok := mm["throughput_vs_alt"]; ok {
			w("| RPC throughput, interleaved | | | %.2f×%s |\n", x, ci95(mm, "throughput_vs_alt"))
		}
		if s, ok := r.get("slow_backend", "memory", a.Wayfinder, "success_pct"); ok {
			if t, ok := r.get("slow_backend", "memory", a.Alternative, "success_pct"); ok {
				fw, _ := r.get("slow_backend", "memory", a.Wayfinder, "failed")
				fa, _ := r.get("slow_backend", "memory", a.Alternative, "failed")
				w("| 1 of %d backends stalled, configured as in section 7: success (failed calls) | %.3f %% (%s) | %.3f %% (%s) | %s× the failures |\n", r.Config.TailBackends, s, fmtNum(fw), t, fmtNum(fa), fmtNum(fw/max(fa, 1)))
			}
		}
		w("\n")
	}
}

// ci95 is " ± x" for metric's 95% confidence half-width (metric_ci95)
// when m has one, else "".
func ci95(m map[string]float64, metric string) string {
	if x, ok := m[metric+"_ci95"]; ok {
		return fmt.Sprintf(" ± %.2f", x)
	}
	return ""
}
