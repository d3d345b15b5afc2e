package server_test

import (
	"context"
	"fmt"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// A server registers once it serves (Start waits for the first attempt;
// Registered says when one succeeded) and is gone from the registry once
// Stop returns.
func Example() {
	reg := memory.New()
	defer reg.Close()
	s, err := server.New(reg, "hello", server.WithID("hello-1"), server.WithZone("z1"))
	if err != nil {
		fmt.Println(err)
		return
	}
	hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: "hello-1"})

	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	<-s.Registered() // closed already here: the registry answered Start's attempt
	insts, _ := reg.Lookup(ctx, "hello")
	fmt.Println("after Start:", len(insts), "instance,", insts[0].ID, "in", insts[0].Zone)

	if err := s.Stop(ctx); err != nil {
		fmt.Println(err)
		return
	}
	insts, _ = reg.Lookup(ctx, "hello")
	fmt.Println("after Stop:", len(insts), "instances")
	// Output:
	// after Start: 1 instance, hello-1 in z1
	// after Stop: 0 instances
}
