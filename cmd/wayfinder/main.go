// Command wayfinder looks at and drives service discovery.
//
//	wayfinder services   <registry-url>
//	wayfinder instances  [-o table|json] <registry-url>/<service>
//	wayfinder watch      <registry-url>/<service>
//	wayfinder register   -addr host:port [-id ID] [-version V] [-zone Z] [-weight N] [-tags a,b] [-meta k=v,...] [-once] <registry-url>/<service>
//	wayfinder deregister -id ID [-force] <registry-url>/<service>
//	wayfinder call       [-policy round_robin] [-n 1] [-d '{"name":"x"}'] [-reflect] <registry-url>/<service> <method>
//	wayfinder diff       [-o table|json] <old-registry-url>[/<service>] <new-registry-url>[/<service>]
//	wayfinder demo       [demo flags]
//	wayfinder xds        [wayfinder-xds flags]   (runs wayfinder-xds from PATH)
//
// Every command that talks to a registry (all but demo) takes -timeout,
// default 10s: how long it waits for the registry's
// answers before it fails, saying whether the connection was refused,
// the registry did not answer, or something answered that is not the
// registry. For watch it bounds the first answer; later errors are shown
// and retried until Ctrl-C. For register it bounds the registration,
// which is retried until then, and then up to 2 s more withdraw what a
// failed registration may have left; for call it bounds the registry's
// answer and, separately, each call.
//
// Registry URLs are those of registry.Open: mem://, consul://127.0.0.1:8500,
// etcd://127.0.0.1:2379. Secrets come from the backends' environment
// variables (CONSUL_HTTP_TOKEN, ETCDCTL_PASSWORD, ...), never from URLs.
// "wayfinder <command> -h" shows a command's flags and examples;
// docs/cli.md is the full reference.
//
// The exit status is 0 on success (and when watch or register is
// interrupted), 1 when the command failed, 2 for bad usage; diff's is
// 0 when the registries hold the same, 1 when they differ, 2 on error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type command struct {
	name, args, help string
	examples         string // indented lines, shown by -h
	run              func(ctx context.Context, args []string, out io.Writer) error
}

func commands() []command {
	return []command{
		{"services", "<registry-url>", "list the services, with instance counts", `
  wayfinder services consul://127.0.0.1:8500
  wayfinder services etcd://10.0.0.1:2379,10.0.0.2:2379
  CONSUL_HTTP_ADDR=10.0.0.5:8500 wayfinder services consul://`, cmdServices},
		{"instances", "[-o table|json] <registry-url>/<service>", "list a service's instances and their attributes", `
  wayfinder instances consul://127.0.0.1:8500/hello
  wayfinder instances -o json etcd://127.0.0.1:2379/hello | jq -r '.[].address'
  wayfinder instances 'consul://127.0.0.1:8500/hello?tag=v2&dc=dc2'`, cmdInstances},
		{"watch", "<registry-url>/<service>", "show changes to a service as they happen, with their delay", `
  wayfinder watch consul://127.0.0.1:8500/hello
  ETCDCTL_ENDPOINTS=10.0.0.1:2379 wayfinder watch etcd:///hello

Each line starts with the local time the change arrived and the time
since the previous line; + is an added instance, - a removed one, ~ a
changed one. An added or changed instance also shows how long after its
registration it arrived (its registrant's clock: skew between machines
shows). Ctrl-C ends the watch (exit status 0).`, cmdWatch},
		{"register", "-addr host:port [flags] <registry-url>/<service>", "register an instance until interrupted, then deregister it", `
  wayfinder register -addr 127.0.0.1:50051 consul://127.0.0.1:8500/hello
  wayfinder register -addr 10.0.0.7:50051 -id hello-7 -zone eu-1a -weight 5 -tags canary -meta owner=team-a etcd://127.0.0.1:2379/hello
  wayfinder register -once -addr 127.0.0.1:50051 -id manual consul://127.0.0.1:8500/hello
  wayfinder register -check grpc -addr 127.0.0.1:50051 consul://127.0.0.1:8500/hello

In Consul the agent probes -addr (-check tcp, the default; grpc; or none),
so an instance whose server died leaves within about 3 s.`, cmdRegister},
		{"deregister", "-id ID [-force] <registry-url>/<service>", "deregister an instance", `
  wayfinder deregister -id hello-7 etcd://127.0.0.1:2379/hello
  wayfinder deregister -force -id manual consul://127.0.0.1:8500/hello   # also if it is unhealthy`, cmdDeregister},
		{"call", "[-policy P] [-n N] [-d JSON] <registry-url>/<service> <method>", "call a method through the resolver and show which instance answered", `
  wayfinder call -d '{"name":"you","num1":1,"num2":2}' consul://127.0.0.1:8500/hello SayHello
  wayfinder call -n 6 -policy wayfinder_p2c_ewma etcd://127.0.0.1:2379/hello HelloService/SayHello
  wayfinder call consul://127.0.0.1:8500/orders grpc.health.v1.Health/Check
  wayfinder call -d '{"id":"42"}' consul://127.0.0.1:8500/orders shop.Orders/Get

The method is "Method", "Service/Method" or "pkg.Service/Method".
HelloService and grpc.health.v1.Health are compiled in; other services
are described through server reflection, which the server must offer.`, cmdCall},
		{"diff", "[-o table|json] <old-registry-url>[/<service>] <new-registry-url>[/<service>]", "show the services and instances only in one registry, or different in the two", `
  wayfinder diff consul://127.0.0.1:8500 etcd://127.0.0.1:2379
  wayfinder diff consul://127.0.0.1:8500/hello etcd://127.0.0.1:2379/hello
  wayfinder diff -o json consul://127.0.0.1:8500 'multi://?read=consul://127.0.0.1:8500,etcd://127.0.0.1:2379'

- is an instance only in the old registry, + one only in the new, ~ one
in both whose address, version, zone, weight, tags or metadata differ.
The exit status is 0 when the registries hold the same, 1 when they
differ, and 2 on error (as diff(1)'s): check it before switching
clients' reads to the new registry.`, cmdDiff},
		{"demo", "[demo flags]", "run the HelloService demo (servers restart under load)", `
  wayfinder demo
  wayfinder demo -registry consul://127.0.0.1:8500 -duration 30s -servers 5
  wayfinder demo -listen 0.0.0.0:50051 -registry consul://10.0.0.5:8500   # servers on ports 50051-50053`, cmdDemo},
		{"xds", "[wayfinder-xds flags]", "serve a registry to proxyless gRPC clients over xDS (runs wayfinder-xds from PATH)", "\n  wayfinder xds -registry consul://127.0.0.1:8500 -listen 127.0.0.1:18000\n  wayfinder xds bootstrap -server 127.0.0.1:18000\n\nwayfinder-xds -h shows its flags; docs/xds.md describes it.", cmdXDS},
	}
}

const environment = `Registry URLs:
  mem://                                  in-process (this command only)
  consul://127.0.0.1:8500[?dc=..&tag=..]  empty host: CONSUL_HTTP_ADDR, else localhost:8500
  etcd://host:2379[,host:2379][?prefix=]  empty host: ETCDCTL_ENDPOINTS, else 127.0.0.1:2379
  multi://?read=<url>,<url>[&write=<url>,<url>]  the union of registries (docs/migration.md)
  A service target adds the service as the path: consul://127.0.0.1:8500/hello.

Environment:
  CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_SSL,
  CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY
  ETCDCTL_ENDPOINTS, ETCDCTL_USER, ETCDCTL_PASSWORD, ETCDCTL_CACERT,
  ETCDCTL_CERT, ETCDCTL_KEY

Timeout: every command that talks to a registry waits for it at most
  -timeout (default 10s), then fails saying why: connection refused, no
  answer, or an answer that is not the registry's. watch waits that long
  for its first answer, then shows errors and retries until Ctrl-C.

Exit status: 0 success, 1 the command failed, 2 bad usage; for diff,
  0 equal, 1 different, 2 error.`

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: wayfinder <command> [arguments]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n  %-10s   %s\n", c.name, c.args, "", c.help)
	}
	fmt.Fprint(w, `
examples:
  wayfinder services consul://127.0.0.1:8500
  wayfinder instances -o json etcd://127.0.0.1:2379/hello
  wayfinder watch consul://127.0.0.1:8500/hello
  wayfinder call -n 4 -d '{"name":"you"}' consul://127.0.0.1:8500/hello SayHello

`)
	fmt.Fprintln(w, environment)
	fmt.Fprintln(w, "\n\"wayfinder <command> -h\" shows a command's flags and examples.")
}

// commandHelp prints a command's usage, flags and examples.
func commandHelp(w io.Writer, c command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: wayfinder %s %s\n\n%s.\n", c.name, c.args, strings.ToUpper(c.help[:1])+c.help[1:])
	if fs != nil {
		var b strings.Builder
		fs.SetOutput(&b)
		fs.PrintDefaults()
		if b.Len() > 0 {
			fmt.Fprintf(w, "\nflags:\n%s", b.String())
		}
	}
	fmt.Fprintf(w, "\nexamples:%s\n\n%s\n", c.examples, environment)
}

// run executes one command and returns the exit status: 0 ok, 1 the
// command failed, 2 bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 && args[0] == "help" {
			// "wayfinder help <command>" is "wayfinder <command> -h".
			return run(ctx, []string{args[1], "-h"}, stdout, stderr)
		}
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout)
		var help helpRequested
		var hint hintError
		var exit exitError
		if errors.As(err, &exit) && !errors.As(err, new(usageError)) {
			if exit.err != nil {
				msg := exit.err.Error()
				if errors.As(exit.err, &hint) {
					msg = hint.err.Error() + "\n" + hint.hint
				}
				fmt.Fprintf(stderr, "wayfinder %s: %s\n", c.name, msg)
			}
			return exit.code
		}
		switch {
		case err == nil:
			return 0
		case errors.As(err, &help):
			commandHelp(stdout, c, help.fs)
			return 0
		case errors.As(err, new(usageError)):
			fmt.Fprintf(stderr, "wayfinder %s: %v\nusage: wayfinder %s %s\nrun \"wayfinder %s -h\" for flags and examples\n", c.name, err, c.name, c.args, c.name)
			return 2
		case errors.As(err, &hint):
			fmt.Fprintf(stderr, "wayfinder %s: %v\n%s\n", c.name, hint.err, hint.hint)
			return 1
		default:
			fmt.Fprintf(stderr, "wayfinder %s: %v\n", c.name, err)
			return 1
		}
	}
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	fmt.Fprintf(stderr, "wayfinder: unknown command %q; commands: %s\nrun \"wayfinder -h\" for help\n", args[0], strings.Join(names, ", "))
	return 2
}

type usageError string

func (e usageError) Error() string { return string(e) }

// helpRequested is returned by parse for -h or --help.
type helpRequested struct{ fs *flag.FlagSet }

func (helpRequested) Error() string { return "help requested" }

// hintError is an error with advice on what to do about it, printed on
// its own line.
type hintError struct {
	err  error
	hint string
}

func (e hintError) Error() string { return e.err.Error() + "\n" + e.hint }
func (e hintError) Unwrap() error { return e.err }
