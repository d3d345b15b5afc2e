// Command wayfinder looks at and drives service discovery.
//
//	wayfinder services   <registry-url>
//	wayfinder instances  [-o json] <registry-url>/<service>
//	wayfinder watch      <registry-url>/<service>
//	wayfinder register   -addr host:port [-id ID] [-version V] [-zone Z] [-weight N] [-tags a,b] [-meta k=v,...] <registry-url>/<service>
//	wayfinder deregister -id ID <registry-url>/<service>
//	wayfinder call       [-policy round_robin] [-n 1] [-d '{"name":"x"}'] <registry-url>/<service> <method>
//	wayfinder demo       [demo flags]
//
// Registry URLs are those of registry.Open: mem://, consul://127.0.0.1:8500,
// etcd://127.0.0.1:2379. Secrets come from the backends' environment
// variables (CONSUL_HTTP_TOKEN, ETCDCTL_PASSWORD, ...), never from URLs.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type command struct {
	name, args, help string
	run              func(ctx context.Context, args []string, out io.Writer) error
}

func commands() []command {
	return []command{
		{"services", "<registry-url>", "list the services, with instance counts", cmdServices},
		{"instances", "[-o table|json] <registry-url>/<service>", "list a service's instances and their attributes", cmdInstances},
		{"watch", "<registry-url>/<service>", "show changes to a service as they happen, with their delay", cmdWatch},
		{"register", "-addr host:port [flags] <registry-url>/<service>", "register an instance until interrupted, then deregister it", cmdRegister},
		{"deregister", "-id ID <registry-url>/<service>", "deregister an instance", cmdDeregister},
		{"call", "[-policy P] [-n N] [-d JSON] <registry-url>/<service> <method>", "call a method through the resolver and show which instance answered", cmdCall},
		{"demo", "[demo flags]", "run the HelloService demo (servers restart under load)", cmdDemo},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: wayfinder <command> [arguments]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n  %-10s   %s\n", c.name, c.args, "", c.help)
	}
}

// run executes one command and returns the exit status: 0 ok, 1 the
// command failed, 2 bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "help" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		if err := c.run(ctx, args[1:], stdout); err != nil {
			fmt.Fprintf(stderr, "wayfinder %s: %v\n", c.name, err)
			if _, ok := err.(usageError); ok {
				fmt.Fprintf(stderr, "usage: wayfinder %s %s\n", c.name, c.args)
				return 2
			}
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "wayfinder: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

type usageError string

func (e usageError) Error() string { return string(e) }
