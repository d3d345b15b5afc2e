// Command client calls HelloService through the Wayfinder resolver.
//
//	go run ./examples/helloworld/client -target consul://127.0.0.1:8500/hello -n 10
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	_ "github.com/wayfinder-rpc/wayfinder/registry/consul" // consul:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/etcd"   // etcd:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/memory" // mem:// URLs
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

func main() {
	target := flag.String("target", "mem:///hello", "service target: <registry URL>/<service>")
	n := flag.Int("n", 5, "number of calls")
	name := flag.String("name", "wayfinder", "name to greet")
	flag.Parse()
	if err := run(*target, *n, *name); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

func run(target string, n int, name string) error {
	cc, err := resolver.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		return err
	}
	defer cc.Close()
	client := hellopb.NewHelloServiceClient(cc)
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := client.SayHello(ctx, &hellopb.HelloRequest{Name: name, Num1: int32(i), Num2: 2}, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			return err
		}
		fmt.Printf("%s (%d + 2 = %d)\n", resp.GetMessage(), i, resp.GetResult())
	}
	return nil
}
