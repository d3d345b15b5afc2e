// Command xdsbench measures Wayfinder's xDS server (module
// github.com/wayfinder-rpc/wayfinder/xds) for the xds scenario of the
// benchmark harness, and prints the samples as JSON on stdout; wfbench
// builds and runs it (wfbench itself must not import go-control-plane).
// Three measurements, each beside its baseline in the same run:
//
//   - propagation: a Register reaching the picks of grpc-go's xDS client
//     (xds:///hello, a child process), against Wayfinder's own resolver
//     in process on the same memory registry;
//   - fleet: one xDS server (a child process, so that its CPU time, heap
//     and bytes written are its own) with -clients raw ADS streams, each
//     on a connection of its own and asking for -services services:
//     upstream watches, server CPU and bytes per change, heap per
//     client; beside it, -go-clients real grpc-go xDS clients (child
//     processes) on the same server and changes, per client;
//   - eds: one service of -endpoints instances, -eds-clients raw
//     clients: push time, bytes and server CPU per change, Delta
//     against State of the World.
//
// By hand, from this module's directory:
//
//	go run ./cmd/xdsbench -changes 10 -clients 100
//
// All on loopback; every wait is bounded.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	_ "google.golang.org/grpc/xds" // the xds:/// resolver of the goclient child

	"github.com/wayfinder-rpc/wayfinder/benchmark/internal/harness"
)

// sizes are the command's flags.
type sizes struct {
	changes    int // propagation: Register+Deregister pairs per variant
	clients    int // fleet: raw ADS clients
	services   int // fleet: services each asks for
	goClients  int // fleet: real grpc-go xDS clients, for comparison
	fleetChg   int // fleet: changes
	endpoints  int // eds: instances of the one service
	edsClients int // eds: raw clients per protocol variant
	edsChg     int // eds: changes per protocol variant
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	var sz sizes
	fs := flag.NewFlagSet("xdsbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	role := fs.String("child", "", "run as a child: server or goclient (used by the command itself)")
	targets := fs.String("targets", "", "goclient: comma-separated targets to call in turn")
	only := fs.String("only", "", "comma-separated measurements to run (default all): propagation, fleet, eds")
	fs.IntVar(&sz.changes, "changes", 20, "propagation: adds (each followed by a remove) per variant")
	fs.IntVar(&sz.clients, "clients", 1000, "fleet: raw ADS clients")
	fs.IntVar(&sz.services, "services", 10, "fleet: services each client asks for")
	fs.IntVar(&sz.goClients, "go-clients", 3, "fleet: grpc-go xDS clients (child processes) measured beside the raw ones")
	fs.IntVar(&sz.fleetChg, "fleet-changes", 20, "fleet: changes (adds and removes, across the services)")
	fs.IntVar(&sz.endpoints, "endpoints", 5000, "eds: instances of the one service")
	fs.IntVar(&sz.edsClients, "eds-clients", 10, "eds: raw clients per protocol variant")
	fs.IntVar(&sz.edsChg, "eds-changes", 20, "eds: changes per protocol variant")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	switch *role {
	case "server":
		err = serveChild(os.Stdin, stdout)
	case "goclient":
		err = runGoClient(strings.Split(*targets, ","), stdout)
	case "":
		var samples []harness.Sample
		samples, err = measure(sz, *only, stderr)
		if err == nil {
			err = json.NewEncoder(stdout).Encode(samples)
		}
	default:
		err = fmt.Errorf("-child %q: want server or goclient", *role)
	}
	if err != nil {
		fmt.Fprintf(stderr, "xdsbench: %v\n", err)
		return 1
	}
	return 0
}

// measure runs the measurements chosen by only (all if empty).
func measure(sz sizes, only string, log io.Writer) ([]harness.Sample, error) {
	var out []harness.Sample
	for _, m := range []struct {
		name string
		f    func(sizes, io.Writer) ([]harness.Sample, error)
	}{{"propagation", propagation}, {"fleet", fleet}, {"eds", eds}} {
		if only != "" && !strings.Contains(","+only+",", ","+m.name+",") {
			continue
		}
		fmt.Fprintf(log, "xdsbench: %s\n", m.name)
		s, err := m.f(sz, log)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		out = append(out, s...)
	}
	return out, nil
}
