package app_test

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/fx"
	"google.golang.org/grpc"

	"github.com/wayfinder-rpc/wayfinder/app"
	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
)

// A server and a client in one fx app over the embedded registry: the
// server registers on start, the client finds it by name, and stopping
// the app drains and deregisters it.
func Example() {
	cfg := app.DefaultConfig()
	cfg.Registry, cfg.Service, cfg.ID = "mem://example", "hello", "hello-1"

	newHello := func() app.Service {
		return func(s grpc.ServiceRegistrar) { hellopb.RegisterHelloServiceServer(s, &hello.Server{Name: "hello-1"}) }
	}
	var clients *app.Clients
	a := fx.New(
		fx.Supply(cfg),
		app.RegistryModule, app.ServerModule, app.ClientModule,
		fx.Provide(app.AsService(newHello)),
		fx.Populate(&clients),
		fx.NopLogger,
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		fmt.Println("start:", err)
		return
	}
	defer a.Stop(ctx)

	cc, err := clients.Conn("hello")
	if err != nil {
		fmt.Println("conn:", err)
		return
	}
	resp, err := hellopb.NewHelloServiceClient(cc).SayHello(ctx, &hellopb.HelloRequest{Name: "fx", Num1: 2, Num2: 3}, grpc.WaitForReady(true))
	if err != nil {
		fmt.Println("call:", err)
		return
	}
	fmt.Println(resp.GetMessage(), resp.GetResult())
	// Output: Hello fx, from hello-1 5
}

// Config comes from the environment and then from flags, the flags
// winning; every variable and flag is listed in Env and -help.
func ExampleConfig_FromEnv() {
	env := map[string]string{"WAYFINDER_REGISTRY": "consul://127.0.0.1:8500", "WAYFINDER_ZONE": "z1", "WAYFINDER_TAGS": "canary, v2"}
	cfg := app.DefaultConfig()
	if err := cfg.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Registry, cfg.Zone, cfg.Tags, cfg.Policy, cfg.Plaintext)

	env = map[string]string{"WAYFINDER_WEIGHT": "heavy"}
	fmt.Println(cfg.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }))
	// Output:
	// consul://127.0.0.1:8500 z1 [canary v2] round_robin true
	// app: WAYFINDER_WEIGHT="heavy": not an integer
}
