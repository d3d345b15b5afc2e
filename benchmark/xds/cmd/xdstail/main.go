// Command xdstail runs the slow-backend tail of the benchmark harness
// (harness.Tail, package benchmark/internal/harness of the root
// module) for the two pairs whose grpc-go built-ins only this module builds:
// wayfinder_weighted_round_robin against weighted_round_robin, and
// wayfinder_outlier_ejection against outlier_detection_experimental,
// each group with a round_robin of its own as the baseline. It prints
// the samples as JSON on stdout; the slow_backend scenario of wfbench
// builds and runs it after its own groups and adds the samples to its
// report. By hand, from this module's directory:
//
//	go run ./cmd/xdstail -tail 5s
//
// The servers, the in-process registry and the measurement are those of
// wfbench's slow_backend scenario; the flags are its sizes.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	_ "google.golang.org/grpc/balancer/roundrobin"         // round_robin
	_ "google.golang.org/grpc/balancer/weightedroundrobin" // weighted_round_robin
	_ "google.golang.org/grpc/xds"                         // outlier_detection_experimental

	"github.com/wayfinder-rpc/wayfinder/balancer/outlier"
	"github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	"github.com/wayfinder-rpc/wayfinder/benchmark/internal/harness"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/standalone"
)

// groups are configured as a user outside xDS would, to act on a backend
// that hangs. The variants of the Wayfinder policies and built-ins are
// those of harness.Alternatives, so the report pairs them.
var groups = [][]harness.TailPolicy{
	{
		{Variant: "round_robin_wrr_group", Name: "round_robin", Config: "{}", Why: "this group's baseline, measured beside it"},
		{Variant: wrr.Name, Name: wrr.Name, Config: "{}", Why: "the registry's weights; the servers register none, so every endpoint weighs 1"},
		{Variant: "weighted_round_robin", Name: "weighted_round_robin", Config: "{}",
			Why: "the servers send no ORCA load reports (per call or out of band), so it has no weights and picks as round_robin"},
	},
	{
		{Variant: "round_robin_outlier_group", Name: "round_robin", Config: "{}", Why: "this group's baseline, measured beside it"},
		{Variant: outlier.Name, Name: outlier.Name,
			Config: `{"child":[{"round_robin":{}}],"interval":"1s","failureRateThreshold":0.85,"minimumRequests":5}`,
			Why: "its defaults (consecutiveFailures 5, checked at each failure; baseEjectionTime 30s, maxEjectionPercent 10) " +
				"plus the failure-percentage rule outlier_detection_experimental is given: failureRateThreshold 0.85 of at least 5 calls (minimumRequests) over a 1s interval"},
		{Variant: "outlier_detection_experimental", Name: "outlier_detection_experimental",
			Config: `{"childPolicy":[{"round_robin":{}}],"interval":"1s","failurePercentageEjection":{"enforcementPercentage":100,"requestVolume":5}}`,
			Why: "failurePercentageEjection as the picker benchmarks configure it (`{}`) ejects nothing: its enforcementPercentage defaults to 0 (gRFC A50). " +
				"Here the same method with enforcementPercentage 100, interval 1s (default 10s) so that it can act within the stall, " +
				"and requestVolume 5 (default 50), since during the stall a host gets about 8 calls a second from the 8 closed-loop workers; " +
				"threshold 85, minimumHosts 5, baseEjectionTime 30s and maxEjectionPercent 10 are the defaults. " +
				"successRateEjection was not chosen: with its defaults (interval 10s, requestVolume 100) it ejects only once an interval holds " +
				"both the stalled host's answers from before the stall and its failures (about 9 s into a 30 s stall in a trial run), " +
				"and with a 1 s interval the stalled host never reaches the request volume"},
	},
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	cfg := harness.DefaultConfig()
	fs := flag.NewFlagSet("xdstail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.TailBackends, "servers", cfg.TailBackends, "servers, one of which stalls")
	fs.DurationVar(&cfg.TailStall, "stall", cfg.TailStall, "how long the stalled server takes to answer")
	fs.DurationVar(&cfg.TailDuration, "tail", cfg.TailDuration, "how long it stalls, per group")
	fs.DurationVar(&cfg.TailDeadline, "deadline", cfg.TailDeadline, "each call's deadline")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	tb := standalone.New("xdstail", stderr)
	var samples []harness.Sample
	err := standalone.Do(tb, func() {
		var err error
		samples, err = harness.Tail(tb, harness.NewMemory(), cfg, groups)
		if err != nil {
			tb.Fatalf("%v", err)
		}
	})
	tb.Close()
	if err == nil {
		err = json.NewEncoder(stdout).Encode(samples)
	}
	if err != nil {
		fmt.Fprintf(stderr, "xdstail: %v\n", err)
		return 1
	}
	return 0
}
