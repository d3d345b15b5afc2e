// Command custompicker shows a user-written load-balancing choice, in
// picker.go, turned into a gRPC policy by Wayfinder's balancer/custom.
// It starts three HelloService servers, two in the client's zone, and
// shows that calls stay in the zone until it empties.
//
//	go run ./examples/custompicker
package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "custompicker:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	ctx := context.Background()
	reg := memory.New()
	defer reg.Close()
	// The example removes a whole zone at once, a mass removal that the
	// resolver's guard would hold for 10 s (see resolver.WithMassRemovalGuard).
	cache := resolver.NewCache(resolver.WithMassRemovalGuard(0, 0, 0))
	defer cache.Close()

	var insts []registry.Instance
	for i, zone := range []string{"eu-1a", "eu-1a", "us-1a"} {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		name := fmt.Sprintf("server-%d (%s)", i, zone)
		srv := grpc.NewServer()
		hellopb.RegisterHelloServiceServer(srv, &hello.Server{Name: name})
		reflection.Register(srv) // grpcurl list, wayfinder call without stubs
		go srv.Serve(lis)        // returns at Stop
		defer srv.Stop()
		inst := registry.Instance{ID: fmt.Sprint(i), Service: "hello", Address: lis.Addr().String(), Zone: zone}
		if err := reg.Register(ctx, inst); err != nil {
			return err
		}
		insts = append(insts, inst)
	}

	cc, err := grpc.NewClient("wayfinder:///hello",
		grpc.WithResolvers(resolver.NewBuilder(reg, resolver.WithCache(cache))),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"prefer_local_zone":{}}]}`))
	if err != nil {
		return err
	}
	defer cc.Close()
	client := hellopb.NewHelloServiceClient(cc)

	// call makes n calls once every server in want has answered, so the
	// output does not depend on connection timing, and prints who
	// answered.
	call := func(title string, n int, want ...string) error {
		deadline := time.Now().Add(10 * time.Second)
		for seen := map[string]bool{}; len(seen) < len(want); {
			r, err := client.SayHello(ctx, &hellopb.HelloRequest{Name: "you"}, grpc.WaitForReady(true))
			if err != nil {
				return err
			}
			from := r.GetMessage()[strings.Index(r.GetMessage(), "from ")+5:]
			if slices.Contains(want, from) {
				seen[from] = true
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: %v never answered", title, want)
			}
		}
		counts := map[string]int{}
		for range n {
			r, err := client.SayHello(ctx, &hellopb.HelloRequest{Name: "you"})
			if err != nil {
				return err
			}
			counts[r.GetMessage()[strings.Index(r.GetMessage(), "from ")+5:]]++
		}
		fmt.Fprintf(w, "%s:\n", title)
		for _, k := range slices.Sorted(maps.Keys(counts)) {
			fmt.Fprintf(w, "  %-20s answered: %v\n", k, counts[k] > 0)
		}
		return nil
	}
	if err := call("local zone eu-1a healthy", 100, "server-0 (eu-1a)", "server-1 (eu-1a)"); err != nil {
		return err
	}
	for _, inst := range insts[:2] {
		if err := reg.Deregister(ctx, inst); err != nil {
			return err
		}
	}
	return call("local zone empty", 100, "server-2 (us-1a)")
}
