package resolver_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/balancer/ringhash" // ring_hash_experimental
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// answeredBy calls SayHello with md and returns the server's name.
func answeredBy(t *testing.T, conn *grpc.ClientConn, md ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(t.Context(), md...), 10*time.Second)
	defer cancel()
	resp, err := hellopb.NewHelloServiceClient(conn).SayHello(ctx, &hellopb.HelloRequest{Name: "p"}, grpc.WaitForReady(true))
	if err != nil {
		return "", err
	}
	m := resp.GetMessage()
	return m[strings.LastIndex(m, " ")+1:], nil
}

func etcdRegistry(t *testing.T) (*etcd.Registry, string) {
	t.Helper()
	srv := testenv.StartEtcd(t)
	r, err := etcd.New([]string{srv.Endpoint()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, "etcd://" + srv.Endpoint()
}

// TestPickFirstShuffleHonoursWeights: grpc-go's own pick_first with
// shuffleAddressList spreads ClientConns by the registry weight (its
// weighted shuffle reads experimental/balancer/weight).
func TestPickFirstShuffleHonoursWeights(t *testing.T) {
	reg, base := etcdRegistry(t)
	svc := "pf-weights"
	for name, w := range map[string]int{"light": 1, "heavy": 9} {
		hs := testenv.StartHello(t, name)
		if err := reg.Register(t.Context(), registry.Instance{ID: name, Service: svc, Address: hs.Addr, Weight: w}); err != nil {
			t.Fatal(err)
		}
	}
	cache := resolver.NewCache()
	t.Cleanup(func() { cache.Close() })
	const conns = 100
	count := map[string]int{}
	for range conns {
		conn, err := cache.NewClient(base+"/"+svc, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"pick_first":{"shuffleAddressList":true}}]}`))
		if err != nil {
			t.Fatal(err)
		}
		name, err := answeredBy(t, conn)
		conn.Close()
		if err != nil {
			t.Fatalf("SayHello() = %v", err)
		}
		count[name]++
	}
	t.Logf("pick_first with shuffleAddressList over %d ClientConns, weights heavy 9 and light 1: %v", conns, count)
	// Expected 90/10 (sd 3); equal weights would give 50/50.
	if count["heavy"] < 75 {
		t.Errorf("heavy (weight 9) was picked by %d of %d ClientConns, light (weight 1) by %d; want about 90", count["heavy"], conns, count["light"])
	}
}

// TestRingHashKeepsKeysAcrossNewPort: with ring_hash_experimental and
// requestHashHeader, every key stays on the same instance when one
// instance re-registers on a new port: the ring position is the instance
// ID (resolver/ringhash.SetHashKey), not the address.
func TestRingHashKeepsKeysAcrossNewPort(t *testing.T) {
	reg, base := etcdRegistry(t)
	svc := "ring-hash"
	servers := map[string]*testenv.HelloServer{}
	for _, id := range []string{"a", "b", "c"} {
		servers[id] = testenv.StartHello(t, id)
		if err := reg.Register(t.Context(), registry.Instance{ID: id, Service: svc, Address: servers[id].Addr}); err != nil {
			t.Fatal(err)
		}
	}
	cache := resolver.NewCache()
	t.Cleanup(func() { cache.Close() })
	conn, err := cache.NewClient(base+"/"+svc, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"ring_hash_experimental":{"requestHashHeader":"x-key"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	const keys = 60
	owner := func(k int) string {
		name, err := answeredBy(t, conn, "x-key", fmt.Sprint("key-", k))
		if err != nil {
			t.Fatalf("SayHello(key-%d) = %v", k, err)
		}
		return strings.TrimSuffix(name, "-moved")
	}
	before := map[int]string{}
	spread := map[string]int{}
	for k := range keys {
		before[k] = owner(k)
		spread[before[k]]++
	}
	t.Logf("%d keys before the move: %v", keys, spread)

	// b restarts on a new port and re-registers under the same ID.
	servers["b"].Stop()
	moved := testenv.StartHello(t, "b-moved")
	if err := reg.Register(t.Context(), registry.Instance{ID: "b", Service: svc, Address: moved.Addr}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "an RPC answered by b on its new port", func() bool {
		for k := range keys {
			if name, _ := answeredBy(t, conn, "x-key", fmt.Sprint("key-", k)); name == "b-moved" {
				return true
			}
		}
		return false
	})
	var movedKeys []string
	for k := range keys {
		if now := owner(k); now != before[k] {
			movedKeys = append(movedKeys, fmt.Sprintf("key-%d: %s → %s", k, before[k], now))
		}
	}
	if len(movedKeys) > 0 {
		t.Errorf("%d of %d keys changed instance when b moved to a new port: %v", len(movedKeys), keys, movedKeys)
	}
}
