// Command fx assembles HelloService servers and a client with go.uber.org/fx
// and Wayfinder's modules. The registry is configuration: the same binary
// runs on the embedded registry, Consul or etcd.
//
//	go run ./examples/fx                                   # server and client in one process, mem://
//	go run ./examples/fx -role server -registry consul://127.0.0.1:8500 -zone z1
//	go run ./examples/fx -role client -registry consul://127.0.0.1:8500
//	WAYFINDER_REGISTRY=etcd://127.0.0.1:2379 go run ./examples/fx -role server
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"go.uber.org/fx"
	"google.golang.org/grpc"

	"github.com/wayfinder-rpc/wayfinder/app"
	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	_ "github.com/wayfinder-rpc/wayfinder/registry/consul" // consul:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/etcd"   // etcd:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/memory" // mem:// URLs
	"github.com/wayfinder-rpc/wayfinder/server"
)

func main() {
	// Defaults, then WAYFINDER_* variables, then flags: the last wins.
	// -help lists every flag with its variable.
	cfg := app.DefaultConfig()
	cfg.Service = "hello"
	cfg.Reflection = true // grpcurl list, wayfinder call without stubs; WAYFINDER_REFLECTION=false turns it off
	if err := cfg.FromEnv(nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	role := flag.String("role", "both", "server, client, or both (both is the only one that works with mem://, which lives in one process)")
	calls := flag.Int("calls", 5, "client: calls to make before exiting")
	cfg.RegisterFlags(flag.CommandLine)
	flag.Parse()
	opts, err := options(cfg, *role, *calls)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fx.New(opts...).Run()
}

// options assembles the app for a role: the registry always, the server
// and HelloService for "server", the clients and the calls for "client".
func options(cfg app.Config, role string, calls int) ([]fx.Option, error) {
	opts := []fx.Option{fx.Supply(cfg), app.RegistryModule, fx.NopLogger}
	serve := role == "server" || role == "both"
	dial := role == "client" || role == "both"
	if !serve && !dial {
		return nil, fmt.Errorf("-role %q: want server, client or both", role)
	}
	if serve {
		opts = append(opts, app.ServerModule, fx.Provide(app.AsService(newHello)), fx.Invoke(announce))
	}
	if dial {
		opts = append(opts, app.ClientModule, fx.Invoke(func(lc fx.Lifecycle, sd fx.Shutdowner, c *app.Clients) {
			runClient(lc, sd, c, calls)
		}))
	}
	return opts, nil
}

// newHello is HelloService as an app.Service, named after the instance.
func newHello(cfg app.Config) app.Service {
	name := cfg.ID
	if name == "" {
		name = "fx-server"
	}
	return func(s grpc.ServiceRegistrar) { hellopb.RegisterHelloServiceServer(s, &hello.Server{Name: name}) }
}

// announce prints the instance once the server has started.
func announce(lc fx.Lifecycle, s *server.Server) {
	lc.Append(fx.StartHook(func() { fmt.Println("serving and registered:", s.Instance()) }))
}

// runClient calls the service from a goroutine owned by the lifecycle,
// then asks fx to shut down.
func runClient(lc fx.Lifecycle, sd fx.Shutdowner, clients *app.Clients, calls int) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			cc, err := clients.Conn("hello")
			if err != nil {
				return err
			}
			go func() {
				defer close(done)
				code := 0
				c := hellopb.NewHelloServiceClient(cc)
				for i := range calls {
					cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
					resp, err := c.SayHello(cctx, &hellopb.HelloRequest{Name: "fx", Num1: int32(i), Num2: 1}, grpc.WaitForReady(true))
					ccancel()
					if err != nil {
						fmt.Println("call failed:", err)
						code = 1
						break
					}
					fmt.Printf("%s (%d + 1 = %d)\n", resp.GetMessage(), i, resp.GetResult())
				}
				_ = sd.Shutdown(fx.ExitCode(code))
			}()
			return nil
		},
		OnStop: func(context.Context) error { cancel(); <-done; return nil },
	})
}
