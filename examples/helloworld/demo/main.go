// Command demo runs Wayfinder's HelloService demo in one process (see
// package faultdemo). It exits 1 if any RPC failed.
//
//	go run ./examples/helloworld/demo -duration 12s
//	go run ./examples/helloworld/demo -registry consul://127.0.0.1:8500
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/wayfinder-rpc/wayfinder/hello/faultdemo"
)

func main() {
	c := faultdemo.DefaultConfig()
	faultdemo.RegisterFlags(flag.CommandLine, &c)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ok, err := faultdemo.Run(ctx, c, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}
