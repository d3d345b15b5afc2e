package consul_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc/health"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
)

// A server registers itself with a TTL check that mirrors its gRPC
// health server, and deregisters on the way out.
func ExampleNew() {
	hs := health.NewServer() // also registered on the grpc.Server
	reg, err := consul.New("127.0.0.1:8500",
		consul.WithTTLCheck(15*time.Second),
		consul.WithHealth(consul.GRPCHealth(hs)),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	inst := registry.Instance{ID: registry.NewID(), Service: "hello", Address: "10.0.0.7:50051", Zone: "eu-west-1a"}
	if err := reg.Register(context.Background(), inst); err != nil {
		log.Printf("not registered yet, retrying in the background: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := reg.Deregister(ctx, inst); err != nil {
		log.Print(err)
	}
}

// Both checks: the agent probes grpc.health.v1 itself, so a crashed
// process leaves the passing set within interval + timeout.
func ExampleWithGRPCCheck() {
	reg, err := consul.New("", // CONSUL_HTTP_ADDR
		consul.WithTTLCheck(15*time.Second),
		consul.WithGRPCCheck(5*time.Second, 2*time.Second),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
}

// A client watches the passing instances tagged v2 in two datacenters.
func ExampleRegistry_Watch() {
	reg, err := registry.Open(context.Background(), "consul://127.0.0.1:8500?dc=dc1,dc2&tag=v2&stale=true")
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	w, err := reg.Watch(context.Background(), "hello")
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	for {
		insts, err := w.Next(context.Background())
		if err != nil {
			log.Print(err) // transient: the last set is still valid
			continue
		}
		fmt.Println(len(insts), "instances")
	}
}

// Registration state is observable without polling.
func ExampleRegistry_Status() {
	reg, _ := consul.New("127.0.0.1:8500")
	defer reg.Close()
	inst := registry.Instance{ID: "a", Service: "hello", Address: "10.0.0.7:50051"}
	_ = reg.Register(context.Background(), inst)
	for s := reg.Status(inst); s.State != consul.StateRegistered; s = reg.Status(inst) {
		<-s.Changed
	}
}
