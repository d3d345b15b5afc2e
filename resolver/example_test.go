package resolver_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// A HelloService server on a free loopback port registers itself in the
// embedded registry, and a client dials the service by name. With Consul
// or etcd only the URLs change: "consul://127.0.0.1:8500/hello",
// "etcd://127.0.0.1:2379/hello".
func ExampleNewClient() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := grpc.NewServer()
	hellopb.RegisterHelloServiceServer(srv, &hello.Server{Name: "a"})
	go srv.Serve(lis)
	defer srv.Stop()

	reg, err := registry.Open(ctx, "mem://example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Close()
	inst := registry.Instance{ID: "hello-a", Service: "hello", Address: lis.Addr().String()}
	if err := reg.Register(ctx, inst); err != nil {
		fmt.Println(err)
		return
	}

	cc, err := resolver.NewClient("mem://example/hello", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cc.Close()
	fmt.Println(cc.CanonicalTarget())
	reply, err := hellopb.NewHelloServiceClient(cc).SayHello(ctx, &hellopb.HelloRequest{Name: "you", Num1: 1, Num2: 2}, grpc.WaitForReady(true))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(reply.GetMessage(), reply.GetResult())
	// Output:
	// mem://example/hello
	// Hello you, from a 3
}
