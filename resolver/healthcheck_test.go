package resolver_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wayfinder-rpc/wayfinder/balancer/hash"
	"github.com/wayfinder-rpc/wayfinder/balancer/outlier"
	"github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	"github.com/wayfinder-rpc/wayfinder/balancer/route"
	"github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	"github.com/wayfinder-rpc/wayfinder/balancer/zone"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// TestPoliciesHonourClientHealthChecking: with grpc-go's client-side
// health checking (healthCheckConfig), a server that goes NOT_SERVING,
// keeping its connections open and with no registry change, stops
// receiving picks under every Wayfinder policy, and gets them back when
// it serves again.
func TestPoliciesHonourClientHealthChecking(t *testing.T) {
	reg, base := etcdRegistry(t)
	policies := []string{"round_robin", wrr.Name, p2c.Name, hash.Name, zone.Name, outlier.Name, route.Name}
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			svc := "hc-" + policy
			sick, well := testenv.StartHello(t, "sick"), testenv.StartHello(t, "well")
			for id, s := range map[string]*testenv.HelloServer{"sick": sick, "well": well} {
				if err := reg.Register(t.Context(), registry.Instance{ID: id, Service: svc, Address: s.Addr}); err != nil {
					t.Fatal(err)
				}
			}
			cache := resolver.NewCache()
			t.Cleanup(func() { cache.Close() })
			conn, err := cache.NewClient(base+"/"+svc, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultServiceConfig(fmt.Sprintf(`{"loadBalancingConfig":[{%q:{}}],"healthCheckConfig":{"serviceName":""}}`, policy)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			// Keys vary for the hash policy, so that both instances own
			// some; calls run 4 at a time, so that p2c's load signal
			// spreads them too.
			var n atomic.Int64
			picked := func(calls int) map[string]int {
				var mu sync.Mutex
				var wg sync.WaitGroup
				got := map[string]int{}
				for range 4 {
					wg.Go(func() {
						for range calls / 4 {
							name, err := answeredBy(t, conn, "x-key", fmt.Sprint(n.Add(1)))
							if err != nil {
								t.Errorf("SayHello() = %v", err)
								return
							}
							mu.Lock()
							got[name]++
							mu.Unlock()
						}
					})
				}
				wg.Wait()
				return got
			}
			wait.For(t, 10*time.Second, "both servers answering", func() bool {
				got := picked(20)
				return got["sick"] > 0 && got["well"] > 0
			})
			sick.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
			wait.For(t, 10*time.Second, "no picks of the NOT_SERVING server", func() bool { return picked(40)["sick"] == 0 })
			if got := picked(100); got["sick"] != 0 {
				t.Errorf("%s: %v of 100 calls went to the NOT_SERVING server after it dropped out", policy, got)
			}
			sick.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			wait.For(t, 10*time.Second, "picks of the server serving again", func() bool { return picked(40)["sick"] > 0 })
		})
	}
}
