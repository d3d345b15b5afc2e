package harness

import "fmt"

// xdsServerSection is section 12: Wayfinder's xDS server (module xds),
// measured by the xds scenario in the module benchmark/xds.
func (r *Report) xdsServerSection(w func(string, ...any)) {
	const sc, be = "xds", "memory"
	res := r.variants(sc, be)
	if len(res) == 0 {
		return
	}
	c := r.Config
	w("## 12. xDS server\n\n")
	w("Wayfinder's xDS management server (module `xds`, `wayfinder-xds`) measured by the command `%s/cmd/xdsbench`, which wfbench builds and runs (wfbench does not import go-control-plane). Every measurement is on loopback, on the command's own memory registry, %d changes per variant; the rows of a table were measured one after the other in the same run.\n\n", xdsModule, c.XDSChanges)

	get := func(variant, metric string) (float64, bool) { return r.get(sc, be, variant, metric) }
	cell := func(variant, metric, unit string) string {
		if x, ok := get(variant, metric); ok {
			return fmtNum(x) + unit
		}
		return "—"
	}
	ratio := func(a, b string, metric string) string {
		x, ok1 := get(a, metric)
		y, ok2 := get(b, metric)
		if !ok1 || !ok2 || y == 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f×", x/y)
	}

	if _, ok := r.Find(sc, be, "xds_go"); ok {
		w("### Registry change → an xDS client's picks\n\n")
		w("From `Register` of a third instance until the first call that reaches it, calling continuously (then `Deregister`, and calls leave it before the next change). *xds_go*: grpc-go's own xDS client (`xds:///hello`) in a child process, through the xDS server in the measuring process, each pick timed when its line is read; the baseline, *resolver*, is Wayfinder's resolver in the measuring process on the same registry. Python's and Node's clients are measured by `make bench-xds` (docs/xds.md), not here: they need clients outside Go.\n\n")
		w("| path | p50 | p99 | max |\n|---|---|---|---|\n")
		for _, v := range []struct{ variant, label string }{{"resolver", "Wayfinder resolver, in process (baseline)"}, {"xds_go", "xDS → grpc-go"}} {
			w("| %s | %s | %s | %s |\n", v.label, cell(v.variant, "p50_ms", " ms"), cell(v.variant, "p99_ms", " ms"), cell(v.variant, "max_ms", " ms"))
		}
		w("| ratio xDS / resolver | %s | %s | |\n\n", ratio("xds_go", "resolver", "p50_ms"), ratio("xds_go", "resolver", "p99_ms"))
	}

	if raw, ok := r.Find(sc, be, "raw_ads_clients"); ok {
		m := raw.Metrics
		w("### One xDS server, %s clients × %s services\n\n", fmtNum(m["clients"]), fmtNum(m["services"]))
		w("The xDS server runs in a child process of its own, so that its CPU time (getrusage), heap (after a GC) and the bytes it writes (counted on its accepted connections: gRPC and HTTP/2 framing included) are its alone. "+
			"The clients are raw ADS streams (State of the World), each on a connection of its own, in the measuring process, not %s grpc-go ClientConns: each asks for the listener, cluster and endpoints of every service, decodes every ClusterLoadAssignment and acknowledges every response, which is what a gRPC client's xDS client does on the wire; it opens no channel, policy or connection to the endpoints. "+
			"Beside them, first, %s real grpc-go xDS clients (child processes, each with a ClientConn per service calling them in turn) on the same server and the same kind of change, as the check that the raw clients' figures per client are representative. "+
			"A change adds or removes a third instance of one service (each service has two), in turn across the services. Per change: from the registry write until every stream has acknowledged it. Upstream watches are counted at the registry (`Watch` calls the xDS server made, and those open).\n\n",
			fmtNum(m["clients"]), cell("grpc_go_clients", "clients", ""))
		w("| | measured | baseline (same run) |\n|---|---|---|\n")
		w("| upstream watches open | %s | %s if every client watched the registry itself (clients × services; not measured) |\n", fmtNum(m["upstream_watches"]), fmtNum(m["clients"]*m["services"]))
		w("| `Watch` calls over the run | %s | |\n", fmtNum(m["watch_calls"]))
		w("| server heap per client | %s KiB | |\n", fmtNum(m["heap_per_client_kb"]))
		w("| server goroutines per client | %s | |\n", fmtNum(m["goroutines_per_client"]))
		w("| server bytes written per change | %s | |\n", fmtNum(m["bytes_per_change"]))
		w("| server bytes written per change, per client | %s | %s with %s grpc-go clients |\n", fmtNum(m["bytes_per_change_per_client"]), cell("grpc_go_clients", "bytes_per_change_per_client", ""), cell("grpc_go_clients", "clients", ""))
		w("| server CPU per change (p50 / p99) | %s ms / %s ms | |\n", fmtNum(m["cpu_ms_per_change"]), fmtNum(m["cpu_ms_per_change_p99"]))
		w("| server CPU per change, per client | %s µs | %s µs with %s grpc-go clients |\n", fmtNum(m["cpu_us_per_change_per_client"]), cell("grpc_go_clients", "cpu_us_per_change_per_client", ""), cell("grpc_go_clients", "clients", ""))
		w("| change → every client has it (p50 / p99) | %s ms / %s ms | |\n", fmtNum(m["push_all_p50_ms"]), fmtNum(m["push_all_p99_ms"]))
		w("| change → the median client has it (p50) | %s ms | |\n", fmtNum(m["push_median_client_p50_ms"]))
		w("| all clients connected and served | %s s | |\n\n", fmtNum(m["connect_s"]))
	}

	if s, ok := r.Find(sc, be, "eds_sotw"); ok {
		m := s.Metrics
		w("### One service of %s endpoints: Delta against State of the World\n\n", fmtNum(m["endpoints"]))
		w("%s raw clients ask for one service of %s instances (the same server child as above, a fresh one), first over State of the World streams, then over Delta streams; a change adds or removes one instance. Push time: from the registry write until the last client has decoded the new ClusterLoadAssignment. Bytes: written by the server per change (all clients), and the EDS response each client decoded (protobuf size).\n\n", fmtNum(m["clients"]), fmtNum(m["endpoints"]))
		w("| | State of the World | Delta | Delta / SotW |\n|---|---|---|---|\n")
		for _, row := range []struct{ label, metric, unit string }{
			{"push, p50", "push_p50_ms", " ms"},
			{"push, p99", "push_p99_ms", " ms"},
			{"server bytes written per change", "bytes_per_change", ""},
			{"server bytes per change, per client", "bytes_per_change_per_client", ""},
			{"EDS response per client", "eds_bytes_per_client", ""},
			{"server CPU per change, p50", "cpu_ms_per_change", " ms"},
			{"server CPU per change, p99", "cpu_ms_per_change_p99", " ms"},
		} {
			w("| %s | %s | %s | %s |\n", row.label, cell("eds_sotw", row.metric, row.unit), cell("eds_delta", row.metric, row.unit), ratio("eds_delta", "eds_sotw", row.metric))
		}
		w("\nEDS serves a service's endpoints as one resource (its ClusterLoadAssignment), and Delta xDS sends changed resources whole: with one service, a change sends all of its endpoints either way. Delta saves bytes when a stream asks for many resources and few change; State of the World in go-control-plane's linear cache already sends only the changed endpoints resources, so the two differ here by their envelopes.\n\n")
	}
}
