package harness

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/standalone"
)

// Main is the command line of wfbench, for commands that run the
// harness with cfg as the defaults of its flags: benchmark/cmd/wfbench,
// and commands in nested modules that add backends through cfg.More
// (benchmark/kubernetes/cmd/wfbench-k8s). It returns the exit code.
func Main(name string, cfg Config) int {
	if code, ok := ChildMain(); ok { // a server_load child
		return code
	}
	var backends, scenarios string
	out := flag.String("out", "docs/benchmarks", "directory for report.json and the SVG charts")
	md := flag.String("md", "docs/benchmarks.md", "Markdown report to write")
	from := flag.String("from", "", "render the report from this report.json instead of measuring")
	merge := flag.Bool("merge", false, "keep the other scenarios' results from the existing -out/report.json (with -scenarios)")
	var notes []string
	flag.Func("note", "a note to add to the report, rendered under the machine (repeatable)", func(s string) error {
		notes = append(notes, s)
		return nil
	})
	flag.IntVar(&cfg.Runs, "runs", cfg.Runs, "runs of each scenario; figures are medians")
	flag.StringVar(&backends, "backends", strings.Join(cfg.Backends, ","), "backends: "+strings.Join(append([]string{"memory", "consul", "etcd", "zookeeper"}, slices.Sorted(maps.Keys(cfg.More))...), ", "))
	flag.StringVar(&scenarios, "scenarios", strings.Join(cfg.Scenarios, ","), "scenarios to run (default all): "+strings.Join(Scenarios(), ", "))
	flag.IntVar(&cfg.Changes, "changes", cfg.Changes, "propagation: adds and removes per run and variant")
	flag.IntVar(&cfg.IdleConns, "idle-conns", cfg.IdleConns, "idle load: ClientConns")
	flag.IntVar(&cfg.IdleServices, "idle-services", cfg.IdleServices, "idle load: services")
	flag.DurationVar(&cfg.IdleWindow, "idle-window", cfg.IdleWindow, "idle load: counting window")
	flag.StringVar(&cfg.PickerBench, "picker-bench", cfg.PickerBench, "picker: -bench regexp for benchmark/internal/picker")
	flag.StringVar(&cfg.PickerTime, "picker-time", cfg.PickerTime, "picker: -benchtime")
	flag.IntVar(&cfg.Rolls, "rolls", cfg.Rolls, "rolling restart: restarts per run and order")
	flag.IntVar(&cfg.RollServers, "roll-servers", cfg.RollServers, "rolling restart: servers")
	flag.DurationVar(&cfg.Outage, "outage", cfg.Outage, "outage: how long the registry is down")
	flag.DurationVar(&cfg.TailDuration, "tail", cfg.TailDuration, "slow backend: how long one backend stalls")
	flag.BoolVar(&cfg.TailXDS, "tail-xds", cfg.TailXDS, "slow backend: also measure the pairs of benchmark/xds (go build there)")
	flag.DurationVar(&cfg.HeteroPhase, "hetero-phase", cfg.HeteroPhase, "heterogeneous: each measured phase, before and after one server degrades")
	flag.Float64Var(&cfg.HeteroRate, "hetero-rate", cfg.HeteroRate, "heterogeneous: calls per second to each policy (open loop)")
	flag.IntVar(&cfg.ScaleServices, "scale-services", cfg.ScaleServices, "scale: services watched by one process")
	flag.IntVar(&cfg.ScaleInsts, "scale-instances", cfg.ScaleInsts, "scale, scale_picker: instances of one service")
	flag.IntVar(&cfg.ScaleChanges, "scale-changes", cfg.ScaleChanges, "scale_picker: register+deregister pairs per policy")
	flag.IntVar(&cfg.ScaleSetSize, "scale-set-size", cfg.ScaleSetSize, "scale: instances per set (EndpointSlice) on a backend with sets")
	flag.IntVar(&cfg.LoadClients, "load-clients", cfg.LoadClients, "server load: client processes")
	flag.IntVar(&cfg.LoadServices, "load-services", cfg.LoadServices, "server load: services each client process watches")
	flag.DurationVar(&cfg.LoadIdle, "load-idle", cfg.LoadIdle, "server load: floor and idle windows")
	flag.DurationVar(&cfg.LoadChange, "load-change", cfg.LoadChange, "server load: window under change")
	flag.Float64Var(&cfg.LoadRate, "load-rate", cfg.LoadRate, "server load: registrations and deregistrations per second under change")
	flag.IntVar(&cfg.XDSChanges, "xds-changes", cfg.XDSChanges, "xds: changes per variant in each measurement")
	flag.IntVar(&cfg.XDSClients, "xds-clients", cfg.XDSClients, "xds: raw ADS clients of one xDS server")
	flag.IntVar(&cfg.XDSServices, "xds-services", cfg.XDSServices, "xds: services each client asks for")
	flag.IntVar(&cfg.XDSGoClients, "xds-go-clients", cfg.XDSGoClients, "xds: grpc-go xDS clients (processes) beside the raw clients")
	flag.IntVar(&cfg.XDSEndpoints, "xds-endpoints", cfg.XDSEndpoints, "xds: endpoints of the one large service")
	flag.IntVar(&cfg.XDSEDSClients, "xds-eds-clients", cfg.XDSEDSClients, "xds: raw clients of the large service per protocol variant")
	flag.Parse()
	cfg.Backends = splitList(backends)
	cfg.Scenarios = splitList(scenarios)
	cfg.Log = os.Stderr
	for _, s := range cfg.Scenarios {
		if !slices.Contains(Scenarios(), s) {
			fmt.Fprintf(os.Stderr, "%s: unknown scenario %q; known: %s\n", name, s, strings.Join(Scenarios(), ", "))
			return 2
		}
	}

	if *from != "" {
		rep, err := ReadReport(*from)
		if err == nil {
			err = rep.Write(*out, *md)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			return 1
		}
		return 0
	}

	root := standalone.New(name, os.Stderr)
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

	var rep *Report
	err := standalone.Do(root, func() { rep = Run(root, cfg) })
	root.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	measured := rep.Seconds
	rep.Notes = append(rep.Notes, notes...)
	if *merge {
		old, err := ReadReport(filepath.Join(*out, "report.json"))
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: -merge: %v\n", name, err)
			return 1
		}
		rep.Merge(old)
	}
	if err := rep.Write(*out, *md); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "%s: wrote %s and %s/ in %.0fs; %d failed runs\n", name, *md, *out, measured, len(rep.Failures))
	if len(rep.Failures) > 0 {
		return 1
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
