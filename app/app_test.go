package app_test

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/app"
	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func helloService(cfg app.Config) app.Service {
	return func(s grpc.ServiceRegistrar) {
		hellopb.RegisterHelloServiceServer(s, &hello.Server{Name: cfg.ID})
	}
}

// runHelloApp starts a server app and a client app for cfg.Registry,
// calls SayHello through the client app, and stops both. Backends run it
// with their own URL: the code is the same, only the URL changes.
func runHelloApp(t *testing.T, registryURL, policy string) {
	cfg := app.DefaultConfig()
	cfg.Registry, cfg.Service, cfg.ID, cfg.Zone = registryURL, "hello", "fx-server-1", "z1"
	srv := fxtest.New(t, fx.Supply(cfg), app.RegistryModule, app.ServerModule, fx.Provide(app.AsService(helloService)), fx.NopLogger)
	srv.RequireStart()
	defer srv.RequireStop()

	var clients *app.Clients
	ccfg := app.DefaultConfig()
	ccfg.Registry, ccfg.Policy = registryURL, policy
	cli := fxtest.New(t, fx.Supply(ccfg), app.RegistryModule, app.ClientModule, fx.Populate(&clients), fx.NopLogger)
	cli.RequireStart()
	defer cli.RequireStop()
	cc, err := clients.Conn("hello")
	if err != nil {
		t.Fatalf("Conn(hello) = %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	resp, err := hellopb.NewHelloServiceClient(cc).SayHello(ctx, &hellopb.HelloRequest{Name: "fx", Num1: 2, Num2: 3}, grpc.WaitForReady(true))
	if err != nil || resp.GetResult() != 5 || !strings.Contains(resp.GetMessage(), "fx-server-1") {
		t.Fatalf("SayHello through the fx apps = %v, %v; want result 5 from fx-server-1", resp, err)
	}
}

func TestHelloAppMemory(t *testing.T) { runHelloApp(t, "mem://fx-test", "round_robin") }

// Wayfinder's policies are selectable by name in configuration.
func TestHelloAppPolicies(t *testing.T) {
	for _, p := range []string{"wayfinder_weighted_round_robin", "wayfinder_p2c_ewma", "wayfinder_route", "wayfinder_zone_aware", "wayfinder_outlier_ejection"} {
		t.Run(p, func(t *testing.T) { runHelloApp(t, "mem://fx-policy-"+p, p) })
	}
}

func TestStartupErrorsAreClear(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	tests := []struct {
		name string
		mut  func(*app.Config)
		want string
	}{
		{"unknown scheme", func(c *app.Config) { c.Registry = "zookeeper://x" }, "unknown scheme"},
		{"unknown parameter", func(c *app.Config) { c.Registry = "mem://?nope=1" }, "nope"},
		{"bad service", func(c *app.Config) { c.Service = "no spaces" }, "service"},
		{"no service", func(c *app.Config) { c.Service = "" }, "no service name"},
		{"unknown policy", func(c *app.Config) { c.Policy = "no_such_policy" }, "no_such_policy"},
		{"port in use", func(c *app.Config) { c.Listen = lis.Addr().String() }, "listen"},
	}
	for _, tc := range tests {
		cfg := app.DefaultConfig()
		cfg.Registry, cfg.Service = "mem://fx-errors", "hello"
		tc.mut(&cfg)
		a := fx.New(fx.Supply(cfg), app.RegistryModule, app.ServerModule, app.ClientModule, fx.NopLogger,
			fx.Invoke(func(*app.Clients) {}))
		err := a.Err()
		if err == nil {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			err = a.Start(ctx)
			cancel()
			if err == nil {
				a.Stop(context.Background())
			}
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: app error = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestStopWithinTimeoutWhileRegistryDown(t *testing.T) {
	cfg := app.DefaultConfig()
	cfg.Registry, cfg.Service = "mem://fx-down", "hello"
	var s *server.Server
	a := fxtest.New(t, fx.Supply(cfg), app.RegistryModule, app.ServerModule, fx.NopLogger, fx.Populate(&s),
		fx.StopTimeout(2*time.Second))
	a.RequireStart()
	memory.Named("fx-down").SetOutage(errors.New("down"))
	defer memory.Named("fx-down").SetOutage(nil)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := a.Stop(ctx)
	if !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("Stop with the registry down = %v, want the deregistration error reported", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Stop with the registry down took the whole stop timeout (%v)", time.Since(start))
	}
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Fatalf("server still accepts connections after Stop")
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{
		"WAYFINDER_REGISTRY": "mem://x", "WAYFINDER_SERVICE": "orders", "WAYFINDER_WEIGHT": "7",
		"WAYFINDER_TAGS": "a, b,,c", "WAYFINDER_DRAIN_TIMEOUT": "3s", "WAYFINDER_PLAINTEXT": "false",
		"WAYFINDER_SUBSET": "3", "WAYFINDER_SUBSET_KEY": "pod-7",
	}
	cfg := app.DefaultConfig()
	if err := cfg.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if cfg.Registry != "mem://x" || cfg.Service != "orders" || cfg.Weight != 7 || strings.Join(cfg.Tags, "|") != "a|b|c" ||
		cfg.DrainTimeout != 3*time.Second || cfg.Plaintext || cfg.Policy != "round_robin" || cfg.Subset != 3 || cfg.SubsetKey != "pod-7" {
		t.Fatalf("FromEnv = %+v", cfg)
	}
	bad := app.DefaultConfig()
	bad.Subset = -1
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "subset") {
		t.Errorf("Validate(Subset -1) = %v, want an error naming the subset", err)
	}
	env = map[string]string{"WAYFINDER_WEIGHT": "heavy", "WAYFINDER_DRAIN_TIMEOUT": "soon"}
	err := cfg.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil || !strings.Contains(err.Error(), "WAYFINDER_WEIGHT") || !strings.Contains(err.Error(), "WAYFINDER_DRAIN_TIMEOUT") {
		t.Fatalf("FromEnv with bad values = %v, want errors naming both variables", err)
	}
}

// TestConfigFlags: the flags set the same fields as the variables, with
// the current values as defaults, and a bad value names the flag.
func TestConfigFlags(t *testing.T) {
	cfg := app.DefaultConfig()
	cfg.Service = "orders"
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	err := fs.Parse([]string{"-registry", "mem://y", "-weight", "4", "-tags", "x, y", "-graceful-timeout", "2s",
		"-plaintext=false", "-lb-policy", "pick_first", "-subset", "2", "-instance-id", "i-1"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Registry != "mem://y" || cfg.Service != "orders" || cfg.Weight != 4 || strings.Join(cfg.Tags, "|") != "x|y" ||
		cfg.GracefulTimeout != 2*time.Second || cfg.DrainTimeout != server.DefaultDrainTimeout || cfg.Plaintext ||
		cfg.Policy != "pick_first" || cfg.Subset != 2 || cfg.ID != "i-1" || cfg.Listen != "127.0.0.1:0" {
		t.Fatalf("after Parse, Config = %+v", cfg)
	}
	if err := fs.Parse([]string{"-plaintext"}); err != nil || !cfg.Plaintext {
		t.Errorf("Parse(-plaintext) = %v, Plaintext %v; want a bare -plaintext to mean true", err, cfg.Plaintext)
	}
	if got := fs.Lookup("service").DefValue; got != "orders" {
		t.Errorf("-service default = %q, want the Config's current value", got)
	}
	if err := fs.Parse([]string{"-drain-timeout", "soon"}); err == nil || !strings.Contains(err.Error(), "drain-timeout") {
		t.Errorf("Parse(-drain-timeout soon) = %v, want an error naming the flag", err)
	}
	want := app.Config{Registry: "mem://", Listen: "127.0.0.1:0", DrainTimeout: server.DefaultDrainTimeout,
		GracefulTimeout: server.DefaultGracefulTimeout, Policy: "round_robin", Plaintext: true}
	if got := app.DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("DefaultConfig() = %+v, want %+v", got, want)
	}
}

// TestRegistryModuleOneValue: RegistryModule provides one registry as
// Registry, Registrar and Discovery.
func TestRegistryModuleOneValue(t *testing.T) {
	cfg := app.DefaultConfig()
	cfg.Registry = "mem://fx-one"
	var (
		reg  registry.Registry
		regr registry.Registrar
		disc registry.Discovery
	)
	a := fxtest.New(t, fx.Supply(cfg), app.RegistryModule, fx.Populate(&reg, &regr, &disc), fx.NopLogger)
	a.RequireStart()
	defer a.RequireStop()
	if reg == nil || regr != registry.Registrar(reg) || disc != registry.Discovery(reg) {
		t.Fatalf("Registry %v, Registrar %v, Discovery %v; want one value", reg, regr, disc)
	}
}

// TestWithoutFx: the constructors the modules use work without an fx
// app: a nil Lifecycle leaves starting and closing to the caller.
func TestWithoutFx(t *testing.T) {
	cfg := app.DefaultConfig()
	cfg.Registry, cfg.Service, cfg.ID = "mem://no-fx", "hello", "no-fx-1"
	reg, err := app.NewRegistry(app.RegistryParams{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	res, err := app.NewServer(app.ServerParams{Config: cfg, Registrar: reg, Services: []app.Service{helloService(cfg)}})
	if err != nil {
		t.Fatal(err)
	}
	if res.GRPC != res.Server.GRPC() {
		t.Errorf("ServerResult.GRPC is not the server's gRPC server")
	}
	if err := res.Server.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer res.Server.Stop(context.Background())
	clients, err := app.NewClients(app.ClientsParams{Config: cfg, Discovery: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer clients.Close()
	cc, err := clients.Conn("hello")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	resp, err := hellopb.NewHelloServiceClient(cc).SayHello(ctx, &hellopb.HelloRequest{Name: "plain"}, grpc.WaitForReady(true))
	if err != nil || !strings.Contains(resp.GetMessage(), "no-fx-1") {
		t.Fatalf("SayHello without fx = %v, %v; want an answer from no-fx-1", resp, err)
	}
}

// TestCredentialsOverridePlaintext: transport credentials in
// DialOptionsGroup take precedence over Plaintext, so a TLS client
// fails against the plaintext test server instead of silently dialing
// in the clear; and without Plaintext or credentials Conn refuses.
func TestCredentialsOverridePlaintext(t *testing.T) {
	const registryURL = "mem://fx-tls"
	cfg := app.DefaultConfig()
	cfg.Registry, cfg.Service, cfg.ID = registryURL, "hello", "fx-tls-1"
	srv := fxtest.New(t, fx.Supply(cfg), app.RegistryModule, app.ServerModule, fx.Provide(app.AsService(helloService)), fx.NopLogger)
	srv.RequireStart()
	defer srv.RequireStop()

	ccfg := app.DefaultConfig()
	ccfg.Registry = registryURL
	var clients *app.Clients
	tlsOpt := grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{}))
	cli := fxtest.New(t, fx.Supply(ccfg), app.DialOptions(tlsOpt),
		app.RegistryModule, app.ClientModule, fx.Populate(&clients), fx.NopLogger)
	cli.RequireStart()
	defer cli.RequireStop()
	cc, err := clients.Conn("hello")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := hellopb.NewHelloServiceClient(cc).SayHello(ctx, &hellopb.HelloRequest{Name: "tls"}); status.Code(err) != codes.Unavailable {
		t.Errorf("SayHello over TLS to a plaintext server = %v, want Unavailable (the TLS credentials used)", err)
	}

	ncfg := app.DefaultConfig()
	ncfg.Registry, ncfg.Plaintext = registryURL, false
	var strict *app.Clients
	strictApp := fxtest.New(t, fx.Supply(ncfg), app.RegistryModule, app.ClientModule, fx.Populate(&strict), fx.NopLogger)
	strictApp.RequireStart()
	defer strictApp.RequireStop()
	if _, err := strict.Conn("hello"); err == nil || !strings.Contains(err.Error(), "credentials") {
		t.Errorf("Conn with Plaintext false and no credentials = %v, want an error about credentials", err)
	}
}

// TestNoInstancesNamed: with the default policy (grpc's round_robin), a
// call to a service with no instances reads UNAVAILABLE naming the
// service and the registry, not round_robin's "no children to pick from".
func TestNoInstancesNamed(t *testing.T) {
	cfg := app.DefaultConfig()
	cfg.Registry, cfg.Plaintext = "mem://app-empty", true
	reg, err := app.NewRegistry(app.RegistryParams{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	clients, err := app.NewClients(app.ClientsParams{Config: cfg, Discovery: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer clients.Close()
	cc, err := clients.Conn("hello")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err = hellopb.NewHelloServiceClient(cc).SayHello(ctx, &hellopb.HelloRequest{Name: "x"})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `service "hello" has no instances in`) {
		t.Fatalf("SayHello to a service with no instances = %v, want UNAVAILABLE naming the service and registry", err)
	}
}

// TestLoadReportsConfig: WAYFINDER_LOAD_REPORTS reaches the server that
// ServerModule runs: the ORCA service is registered and the server-wide
// recorder exists; by default neither.
func TestLoadReportsConfig(t *testing.T) {
	for _, env := range []string{"", "true"} {
		cfg := app.DefaultConfig()
		lookup := func(string) (string, bool) { return "", false }
		if env != "" {
			lookup = func(k string) (string, bool) { return env, k == "WAYFINDER_LOAD_REPORTS" }
		}
		if err := cfg.FromEnv(lookup); err != nil {
			t.Fatal(err)
		}
		cfg.Registry, cfg.Service = "mem://load-reports", "hello"
		var s *server.Server
		a := fxtest.New(t, fx.Supply(cfg), app.RegistryModule, app.ServerModule, fx.Provide(app.AsService(helloService)), fx.Populate(&s), fx.NopLogger)
		a.RequireStart()
		_, orca := s.GRPC().GetServiceInfo()["xds.service.orca.v3.OpenRcaService"]
		if want := env == "true"; orca != want || (s.LoadReports() != nil) != want {
			t.Errorf("WAYFINDER_LOAD_REPORTS=%q: ORCA service registered %v, LoadReports() set %v; want %v", env, orca, s.LoadReports() != nil, want)
		}
		a.RequireStop()
	}
}
