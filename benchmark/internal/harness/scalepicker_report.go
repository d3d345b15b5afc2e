package harness

import (
	"fmt"
	"strings"
)

// scalePickerMarkdown renders the scale_picker results of section 8: how
// they were measured, then one table per backend with the policies side
// by side and P2C's ratio to round_robin in the same run.
func (r *Report) scalePickerMarkdown(w func(string, ...any)) {
	type table struct {
		backend string
		rr, pc  Result
	}
	var tables []table
	for _, be := range r.Config.Backends {
		rr, ok1 := r.Find("scale_picker", be, scalePolicies[0].name)
		pc, ok2 := r.Find("scale_picker", be, scalePolicies[1].name)
		if ok1 || ok2 {
			tables = append(tables, table{be, rr, pc})
		}
	}
	if len(tables) == 0 {
		return
	}
	var n, changes float64
	for _, t := range tables {
		for _, res := range []Result{t.rr, t.pc} {
			n, changes = max(n, res.Metrics["instances"]), max(changes, res.Metrics["changes"]/2)
		}
	}
	w("### One service with %s instances, to the picker\n\n", fmtNum(n))
	w("%s instances that serve: one gRPC server (HelloService and health) serving on %s listeners on 127.0.0.1, in the same process as the client, each listener registered as an instance of one service. "+
		"One real ClientConn through Wayfinder's resolver (a Cache), with round_robin, then with wayfinder_p2c_ewma (one after the other: each ClientConn has %s client conns, and the servers as many), "+
		"under a policy of the harness that passes everything through to the policy and records what it is given and what it publishes: the resolver's states, each SubConn's READY after its health listener, each SubConn's shutdown, and each picker with the time gRPC got it. "+
		"*First full state*: from dialling (NewClient, Connect) to the resolver's first state, to every SubConn READY, and to the first picker published after the last of them; the heap (after GC) and goroutines this added are the ClientConn's (its resolver, policy and SubConns) and both ends of every connection. "+
		"*Changes*: %s times, Register of one more instance (a server of its own) until the resolver's state with it, and until the first picker published after its SubConn became READY, which includes it; "+
		"then Deregister until the state without it, and until the first picker published after its SubConn was shut down, which excludes it. "+
		"Each of those pickers is checked by picking from it (round_robin's picker cycles, so one pick per endpoint sees them all; P2C's draws two at random and takes the less loaded, so whether picks find a new endpoint depends on the loads: its own view in balancer/inspect, the endpoints its last picker was built from, must have the new instance READY, then not at all, and 16 picks per endpoint must not return the removed one), and on the first change real calls check it too: calls reach the new instance, then a streak of calls (3 per endpoint, at most 10,000) does not. "+
		"Changes are 50–150 ms apart and no calls are in flight during them; a change's p99 is the slowest of %s in a run. "+
		"CPU time and allocations are the process's, from just before the Register or Deregister until that picker, without the checks: the resolver, the policy and gRPC, the registry client (on memory the registry itself) and the new instance's server end of its connection. "+
		"On Consul the %s instances are written straight into the catalog, on a node of their own without checks (registered through the agent, each would be heartbeaten from this process: %s TTL updates a second); the extra instance is registered by Wayfinder's Consul Registrar. "+
		"Ratios are P2C's figure over round_robin's in the same run: of p50 for latencies, of bytes for allocations.\n\n",
		fmtNum(n), fmtNum(n), fmtNum(n), fmtNum(changes), fmtNum(changes), fmtNum(n), fmtNum(n/5))
	for _, t := range tables {
		a, b := t.rr.Metrics, t.pc.Metrics
		ratio := func(k string) string {
			if a[k] > 0 && b[k] > 0 {
				return fmt.Sprintf("%.2f×", b[k]/a[k])
			}
			return ""
		}
		row := func(label string, cell func(map[string]float64) string, ratioKey string) {
			w("| %s | %s | %s | %s |\n", label, cell(a), cell(b), ratio(ratioKey))
		}
		one := func(k string) func(map[string]float64) string {
			return func(m map[string]float64) string { return fmtMs(m[k]) }
		}
		pct := func(k string) func(map[string]float64) string {
			return func(m map[string]float64) string {
				return fmt.Sprintf("%s / %s ms", fmtNum(m[k+"_p50_ms"]), fmtNum(m[k+"_p99_ms"]))
			}
		}
		w("| %s: one service, %s instances serving | %s | %s | P2C / round_robin |\n|---|---|---|---|\n", t.backend, fmtNum(a["instances"]), t.rr.Variant, t.pc.Variant)
		row("first full state: the resolver's first state", one("first_resolver_ms"), "")
		row("first full state: every SubConn READY", one("first_ready_ms"), "first_ready_ms")
		row(fmt.Sprintf("first full state: the first picker with all %s", fmtNum(a["instances"])), one("first_picker_ms"), "first_picker_ms")
		row("process CPU to the first full state", one("connect_cpu_ms"), "connect_cpu_ms")
		row("heap added: the ClientConn and both ends of its connections (per instance)", func(m map[string]float64) string {
			return fmt.Sprintf("%s MiB (%s KiB)", fmtNum(m["heap_mib"]), fmtNum(m["heap_kib_per_instance"]))
		}, "heap_mib")
		row("goroutines added per instance, both ends", func(m map[string]float64) string { return fmtNum(m["goroutines_per_instance"]) }, "")
		row("register → resolver state, p50 / p99", pct("register_resolver"), "register_resolver_p50_ms")
		row("register → **the picker includes it**, p50 / p99", pct("register_picker"), "register_picker_p50_ms")
		row("deregister → resolver state, p50 / p99", pct("deregister_resolver"), "deregister_resolver_p50_ms")
		row("deregister → **the picker excludes it**, p50 / p99", pct("deregister_picker"), "deregister_picker_p50_ms")
		row("process CPU per change", func(m map[string]float64) string { return fmtNum(m["process_cpu_ms_per_change"]) + " ms" }, "process_cpu_ms_per_change")
		row("allocations per change", func(m map[string]float64) string {
			return fmt.Sprintf("%s (%s KiB)", fmtNum(m["allocs_per_change"]), fmtNum(m["alloc_kib_per_change"]))
		}, "alloc_kib_per_change")
		w("\n")
		var notes []string
		if x := a["listen_ms"]; x > 0 {
			notes = append(notes, fmt.Sprintf("opening the %s listeners took %s ms and %s KiB of heap", fmtNum(a["instances"]), fmtNum(x), fmtNum(a["listeners_heap_kib"])))
		}
		if x := a["register_all_ms"]; x > 0 {
			how := "8 writers"
			if t.backend == "consul" {
				how = "catalog transactions of 64, one at a time"
			}
			notes = append(notes, fmt.Sprintf("registering the instances (%s) %s", how, fmtMs(x)))
		}
		if len(notes) > 0 {
			w("On %s, %s.\n\n", t.backend, strings.Join(notes, "; "))
		}
	}
}

// fmtMs renders milliseconds, in seconds from 10 s.
func fmtMs(v float64) string {
	if v >= 10000 {
		return fmtNum(v/1000) + " s"
	}
	return fmtNum(v) + " ms"
}
