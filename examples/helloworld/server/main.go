// Command server runs one HelloService server that registers itself and
// drains before it stops (Ctrl-C).
//
//	go run ./examples/helloworld/server -registry consul://127.0.0.1:8500 -listen 127.0.0.1:50051
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	_ "github.com/wayfinder-rpc/wayfinder/registry/consul" // consul:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/etcd"   // etcd:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/memory" // mem:// URLs
	"github.com/wayfinder-rpc/wayfinder/server"
)

func main() {
	regURL := flag.String("registry", "mem://", "registry URL")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	name := flag.String("name", "", "instance ID (default: random)")
	zone := flag.String("zone", "", "zone to register")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*regURL, *listen, *name, *zone, log); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func run(regURL, listen, name, zone string, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reg, err := registry.Open(ctx, regURL)
	if err != nil {
		return err
	}
	defer reg.Close()
	s, err := server.New(reg, "hello", server.WithListenAddress(listen), server.WithID(name), server.WithZone(zone), server.WithLogger(log),
		server.WithReflection()) // grpcurl list, wayfinder call without stubs
	if err != nil {
		return err
	}
	id := name
	if id == "" {
		id = "hello-server"
	}
	hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: id})
	if err := s.Start(ctx); err != nil {
		return err
	}
	log.Info("serving", "instance", s.Instance().String())
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return s.Stop(stopCtx)
}
