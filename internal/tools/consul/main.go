// Command consul is a minimal build of the Consul agent, used only by
// Wayfinder's tests and benchmarks. Consul is not packaged for Debian here,
// but its module is on the Go module proxy, so the test harness builds the
// agent from source once and caches the binary under $HOME/.cache.
//
// It lives in its own module so that Consul's large dependency graph never
// enters Wayfinder's go.mod.
package main

import (
	"fmt"
	"io"
	"log"
	"os"

	mcli "github.com/mitchellh/cli"

	"github.com/hashicorp/consul/command/agent"
	"github.com/hashicorp/consul/command/cli"
	"github.com/hashicorp/consul/command/version"
	_ "github.com/hashicorp/consul/service_os"
)

func main() {
	log.SetOutput(io.Discard)
	ui := &cli.BasicUI{BasicUi: mcli.BasicUi{Writer: os.Stdout, ErrorWriter: os.Stderr}}
	c := &mcli.CLI{
		Args: os.Args[1:],
		Commands: map[string]mcli.CommandFactory{
			"agent":   func() (mcli.Command, error) { return agent.New(ui), nil },
			"version": func() (mcli.Command, error) { return version.New(ui), nil },
		},
		Name:        "consul",
		HelpWriter:  os.Stdout,
		ErrorWriter: os.Stderr,
	}
	code, err := c.Run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "consul: %v\n", err)
		os.Exit(1)
	}
	os.Exit(code)
}
