// Command wfbench runs Wayfinder's benchmark harness (package
// internal/bench) against real Consul and etcd servers and real gRPC
// servers on loopback, and writes the report: docs/benchmarks.md, and
// docs/benchmarks/report.json with SVG charts. `make bench` runs it.
//
//	go run ./internal/bench/cmd/wfbench [flags]
//
// The Consul and etcd binaries come from WAYFINDER_CONSUL_BIN and
// WAYFINDER_ETCD_BIN, as for the tests (the Makefile sets them).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/wayfinder-rpc/wayfinder/internal/bench"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/standalone"
)

func main() {
	os.Exit(run())
}

func run() int {
	cfg := bench.DefaultConfig()
	var backends, scenarios string
	out := flag.String("out", "docs/benchmarks", "directory for report.json and the SVG charts")
	md := flag.String("md", "docs/benchmarks.md", "Markdown report to write")
	from := flag.String("from", "", "render the report from this report.json instead of measuring")
	merge := flag.Bool("merge", false, "keep the other scenarios' results from the existing -out/report.json (with -scenarios)")
	flag.IntVar(&cfg.Runs, "runs", cfg.Runs, "runs of each scenario; figures are medians")
	flag.StringVar(&backends, "backends", strings.Join(cfg.Backends, ","), "backends: memory, consul, etcd")
	flag.StringVar(&scenarios, "scenarios", "", "scenarios to run (default all): "+strings.Join(bench.Scenarios(), ", "))
	flag.IntVar(&cfg.Changes, "changes", cfg.Changes, "propagation: adds and removes per run and variant")
	flag.IntVar(&cfg.IdleConns, "idle-conns", cfg.IdleConns, "idle load: ClientConns")
	flag.IntVar(&cfg.IdleServices, "idle-services", cfg.IdleServices, "idle load: services")
	flag.DurationVar(&cfg.IdleWindow, "idle-window", cfg.IdleWindow, "idle load: counting window")
	flag.StringVar(&cfg.PickerBench, "picker-bench", cfg.PickerBench, "picker: -bench regexp for balancer/internal/benchcmp")
	flag.StringVar(&cfg.PickerTime, "picker-time", cfg.PickerTime, "picker: -benchtime")
	flag.IntVar(&cfg.Rolls, "rolls", cfg.Rolls, "rolling restart: restarts per run and order")
	flag.IntVar(&cfg.RollServers, "roll-servers", cfg.RollServers, "rolling restart: servers")
	flag.DurationVar(&cfg.Outage, "outage", cfg.Outage, "outage: how long the registry is down")
	flag.DurationVar(&cfg.TailDuration, "tail", cfg.TailDuration, "slow backend: how long one backend stalls")
	flag.IntVar(&cfg.ScaleServices, "scale-services", cfg.ScaleServices, "scale: services watched by one process")
	flag.IntVar(&cfg.ScaleInsts, "scale-instances", cfg.ScaleInsts, "scale: instances of one service")
	flag.Parse()
	cfg.Backends = split(backends)
	cfg.Scenarios = split(scenarios)
	cfg.Log = os.Stderr
	for _, s := range cfg.Scenarios {
		if !contains(bench.Scenarios(), s) {
			fmt.Fprintf(os.Stderr, "wfbench: unknown scenario %q; known: %s\n", s, strings.Join(bench.Scenarios(), ", "))
			return 2
		}
	}

	if *from != "" {
		rep, err := bench.ReadReport(*from)
		if err == nil {
			err = rep.Write(*out, *md)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "wfbench: %v\n", err)
			return 1
		}
		return 0
	}

	root := standalone.New("wfbench", os.Stderr)
	// The servers are stopped on the way out, even on ^C.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sig:
			root.Close()
			os.Exit(130)
		case <-done:
		}
	}()

	var rep *bench.Report
	err := standalone.Do(root, func() { rep = bench.Run(root, cfg) })
	root.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "wfbench: %v\n", err)
		return 1
	}
	measured := rep.Seconds
	if *merge {
		old, err := bench.ReadReport(filepath.Join(*out, "report.json"))
		if err != nil {
			fmt.Fprintf(os.Stderr, "wfbench: -merge: %v\n", err)
			return 1
		}
		rep.Merge(old)
	}
	if err := rep.Write(*out, *md); err != nil {
		fmt.Fprintf(os.Stderr, "wfbench: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "wfbench: wrote %s and %s/ in %.0fs; %d failed runs\n", *md, *out, measured, len(rep.Failures))
	if len(rep.Failures) > 0 {
		return 1
	}
	return 0
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
