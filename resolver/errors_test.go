package resolver_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/balancer/custom"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/hash"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/outlier"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/route"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	_ "github.com/wayfinder-rpc/wayfinder/balancer/zone"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	_ "github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

const pickFirst = `{"loadBalancingConfig":[{"pick_first":{}}]}`

// newClient dials target through c with the policy of config.
func newClient(t *testing.T, c *resolver.Cache, target, config string) hellopb.HelloServiceClient {
	t.Helper()
	cc, err := c.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(config))
	if err != nil {
		t.Fatalf("NewClient(%q) = %v", target, err)
	}
	t.Cleanup(func() { cc.Close() })
	return hellopb.NewHelloServiceClient(cc)
}

// failFast calls SayHello without wait-for-ready and returns its error.
// The call waits for the resolver's first word (a set or an error), so
// its deadline is only a guard against a hang.
func failFast(t *testing.T, client hellopb.HelloServiceClient) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := client.SayHello(ctx, &hellopb.HelloRequest{Name: "t"})
	return err
}

// wantUnavailable checks err is UNAVAILABLE and names every one of names.
func wantUnavailable(t *testing.T, what string, err error, names ...string) {
	t.Helper()
	t.Logf("%s = %v", what, err)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("%s = %v (code %v), want UNAVAILABLE", what, err, status.Code(err))
	}
	for _, n := range names {
		if !strings.Contains(status.Convert(err).Message(), n) {
			t.Fatalf("%s = %v, want a message naming %q", what, err, n)
		}
	}
}

// waitForReady starts a wait-for-ready SayHello and returns its result.
func waitForReady(t *testing.T, client hellopb.HelloServiceClient, timeout time.Duration) <-chan error {
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	go func() {
		defer cancel()
		_, err := client.SayHello(ctx, &hellopb.HelloRequest{Name: "t"}, grpc.WaitForReady(true))
		done <- err
	}()
	return done
}

// TestRegistryDownIsUnavailable: a registry that is down before the
// first set fails a fail-fast RPC with UNAVAILABLE naming the service
// and the registry, and a wait-for-ready RPC waits through it and
// succeeds once the registry is back, for pick_first and round_robin.
func TestRegistryDownIsUnavailable(t *testing.T) {
	for _, pol := range []struct{ name, config string }{{"pick_first", pickFirst}, {"round_robin", roundRobin}} {
		t.Run(pol.name, func(t *testing.T) {
			store := memory.Named("down-" + pol.name)
			store.SetOutage(errors.New("simulated outage"))
			client := newClient(t, newCache(t), "mem://down-"+pol.name+"/hello", pol.config)
			wantUnavailable(t, "SayHello with the registry down", failFast(t, client),
				`service "hello"`, "mem://down-"+pol.name, "simulated outage")

			waiting := waitForReady(t, client, 30*time.Second)
			// The wait-for-ready call is in flight; it must still be
			// waiting after fail-fast calls saw the outage again.
			wantUnavailable(t, "SayHello with the registry still down", failFast(t, client), `service "hello"`)
			select {
			case err := <-waiting:
				t.Fatalf("wait-for-ready SayHello with the registry down = %v, want it to wait", err)
			default:
			}
			a := testenv.StartHello(t, "a")
			store.SetOutage(nil)
			if err := store.Open().Register(t.Context(), instanceOf(a)); err != nil {
				t.Fatal(err)
			}
			if err := <-waiting; err != nil {
				t.Fatalf("wait-for-ready SayHello across the outage = %v, want success once the registry is back", err)
			}
		})
	}
}

// TestNotEtcdIsUnavailable: an etcd endpoint that answers HTTP 404 made
// etcd's client return codes.Unimplemented, which reached the RPC as is
// and ended wait-for-ready calls at once. It must read UNAVAILABLE,
// naming the service and the endpoint, and wait-for-ready must wait.
func TestNotEtcdIsUnavailable(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true) // etcd's gRPC speaks h2c
	srv.Start()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	client := newClient(t, newCache(t), "etcd://"+addr+"/hello", roundRobin)
	wantUnavailable(t, "SayHello with an etcd endpoint answering 404", failFast(t, client), `service "hello"`, "etcd://"+addr)

	// Nothing will ever answer: the call waits to its deadline rather
	// than ending with the registry's trouble.
	err := <-waitForReady(t, client, time.Second)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("wait-for-ready SayHello with an etcd endpoint answering 404 = %v, want it to wait to its deadline", err)
	}
}

// TestConsulCutIsUnavailable: a real Consul behind a cut proxy.
func TestConsulCutIsUnavailable(t *testing.T) {
	agent := testenv.StartConsul(t)
	reg, err := consul.New(agent.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	a := testenv.StartHello(t, "a")
	if err := reg.Register(t.Context(), registry.Instance{ID: "a", Service: "hello", Address: a.Addr}); err != nil {
		t.Fatal(err)
	}
	proxy := registrytest.NewProxy(t, agent.HTTPAddr())
	proxy.Cut()

	client := newClient(t, newCache(t), "consul://"+proxy.Addr()+"/hello", roundRobin)
	wantUnavailable(t, "SayHello with Consul cut off", failFast(t, client), `service "hello"`, "consul://"+proxy.Addr())
	waiting := waitForReady(t, client, 60*time.Second)
	wantUnavailable(t, "SayHello with Consul still cut off", failFast(t, client), `service "hello"`)
	select {
	case err := <-waiting:
		t.Fatalf("wait-for-ready SayHello with Consul cut off = %v, want it to wait", err)
	default:
	}
	proxy.Restore()
	if err := <-waiting; err != nil {
		t.Fatalf("wait-for-ready SayHello across the cut = %v, want success once Consul is back", err)
	}
}

// policies are gRPC's own and every Wayfinder policy, as service configs.
var policies = []struct{ name, config string }{
	{"pick_first", pickFirst},
	{"round_robin", roundRobin},
	{"wrr", `{"loadBalancingConfig":[{"wayfinder_weighted_round_robin":{}}]}`},
	{"p2c", `{"loadBalancingConfig":[{"wayfinder_p2c_ewma":{}}]}`},
	{"hash", `{"loadBalancingConfig":[{"wayfinder_consistent_hash":{}}]}`},
	{"route", `{"loadBalancingConfig":[{"wayfinder_route":{"subset":"version=v1"}}]}`},
	{"custom", `{"loadBalancingConfig":[{"wayfinder_test_first":{}}]}`},
	{"zone", `{"loadBalancingConfig":[{"wayfinder_zone_aware":{"localZone":"z1","child":[{"wayfinder_weighted_round_robin":{}}]}}]}`},
	{"outlier", `{"loadBalancingConfig":[{"wayfinder_outlier_ejection":{"child":[{"round_robin":{}}]}}]}`},
}

func init() {
	custom.Register("wayfinder_test_first", func(custom.Call, []custom.Endpoint) (int, error) { return 0, nil })
}

// TestNoInstancesNamesServiceAndRegistry: with every policy, a service
// with no instances, from the start and after its last instance left,
// fails fail-fast RPCs with UNAVAILABLE reading "service X has no
// instances in <registry>", and wait-for-ready RPCs wait for an instance.
func TestNoInstancesNamesServiceAndRegistry(t *testing.T) {
	for _, pol := range policies {
		t.Run(pol.name, func(t *testing.T) {
			name := "empty-" + pol.name
			reg := memory.Named(name).Open()
			// No guard: the last instance's removal reaches clients at once.
			client := newClient(t, newCache(t, resolver.WithMassRemovalGuard(0, 0, 0)), "mem://"+name+"/hello", pol.config)
			want := `service "hello" has no instances in mem://` + name
			wantUnavailable(t, "SayHello to a service with no instances", failFast(t, client), want)

			waiting := waitForReady(t, client, 30*time.Second)
			wantUnavailable(t, "SayHello to a service still with no instances", failFast(t, client), want)
			select {
			case err := <-waiting:
				t.Fatalf("wait-for-ready SayHello with no instances = %v, want it to wait", err)
			default:
			}
			a := testenv.StartHello(t, "a")
			inst := registry.Instance{ID: "a", Service: "hello", Address: a.Addr, Version: "v1", Zone: "z1"}
			if err := reg.Register(t.Context(), inst); err != nil {
				t.Fatal(err)
			}
			if err := <-waiting; err != nil {
				t.Fatalf("wait-for-ready SayHello until an instance registers = %v, want success", err)
			}

			// The last instance leaves.
			if err := reg.Deregister(t.Context(), inst); err != nil {
				t.Fatal(err)
			}
			var err error
			wait.For(t, 10*time.Second, "a fail-fast call fails once the last instance left", func() bool {
				err = failFast(t, client)
				return err != nil
			})
			wantUnavailable(t, "SayHello after the last instance left", err, want)
		})
	}
}

// TestNoInstancesWithBuilder: a NewBuilder builder dialled with its
// DialOptions reads the same for grpc's round_robin, and a Wayfinder
// policy dialled with grpc.WithResolvers alone gets there too once the
// resolver's error follows its empty set.
func TestNoInstancesWithBuilder(t *testing.T) {
	reg := memory.New()
	b := resolver.NewBuilder(reg, resolver.WithCache(newCache(t)))
	want := `service "hello" has no instances in *memory.Registry`

	cc, err := grpc.NewClient("wayfinder:///hello", append(b.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(roundRobin))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	wantUnavailable(t, "SayHello (round_robin, DialOptions) to a service with no instances", failFast(t, hellopb.NewHelloServiceClient(cc)), want)

	_, client := dial(t, b, "wayfinder:///hello", grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_weighted_round_robin":{}}]}`))
	wait.For(t, 10*time.Second, "the resolver's error replaces gRPC's text", func() bool {
		return strings.Contains(failFast(t, client).Error(), want)
	})
	wantUnavailable(t, "SayHello (wayfinder_weighted_round_robin, WithResolvers) to a service with no instances", failFast(t, client), want)
}
