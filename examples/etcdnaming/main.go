// Command etcdnaming shows Wayfinder and etcd's own gRPC naming
// (go.etcd.io/etcd/client/v3/naming) side by side on one etcd, both
// ways:
//
//  1. a server.Server registers "hello" with Wayfinder, and a client on
//     etcd's naming resolver dials it (target etcd:////wayfinder/services/hello);
//  2. a server registered with etcd's endpoints.Manager for target
//     "legacy/greeter" is dialled through Wayfinder's resolver
//     (etcd://host:2379/greeter?prefix=legacy).
//
// It needs a running etcd: go run ./examples/etcdnaming -etcd 127.0.0.1:2379
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	etcdresolver "go.etcd.io/etcd/client/v3/naming/resolver"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/resolver"
	"github.com/wayfinder-rpc/wayfinder/server"
)

func main() {
	endpoint := flag.String("etcd", "127.0.0.1:2379", "etcd endpoint (host:port)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *endpoint, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "etcdnaming:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, endpoint string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()

	// 1. Wayfinder registers; etcd's naming resolver dials.
	reg, err := etcd.NewFromClient(cli)
	if err != nil {
		return err
	}
	defer reg.Close()
	s, err := server.New(reg, "hello", server.WithID("wf-1"), server.WithZone("z1"), server.WithWeight(3), server.WithReflection())
	if err != nil {
		return err
	}
	hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: "wf-1"})
	if err := s.Start(ctx); err != nil {
		return err
	}
	defer s.Stop(context.Background())
	target := reg.Prefix() + "/hello"
	eps, err := endpoints.NewManager(cli, target)
	if err != nil {
		return err
	}
	list, err := eps.List(ctx)
	if err != nil {
		return err
	}
	for key, ep := range list {
		fmt.Fprintf(out, "etcd naming sees %s: Addr %s, Metadata %v\n", key, ep.Addr, ep.Metadata)
	}
	b, err := etcdresolver.NewBuilder(cli)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient("etcd:///"+target, grpc.WithResolvers(b), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := call(ctx, out, "etcd naming resolver, etcd:///"+target, conn); err != nil {
		return err
	}

	// 2. etcd's endpoints.Manager registers; Wayfinder's resolver dials.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	legacy := grpc.NewServer()
	hellopb.RegisterHelloServiceServer(legacy, &hello.Server{Name: "legacy-1"})
	go legacy.Serve(lis) // returns at Stop
	defer legacy.Stop()
	em, err := endpoints.NewManager(cli, "legacy/greeter")
	if err != nil {
		return err
	}
	lease, err := cli.Grant(ctx, 10)
	if err != nil {
		return err
	}
	defer cli.Revoke(context.Background(), lease.ID)
	if err := em.AddEndpoint(ctx, "legacy/greeter/legacy-1", endpoints.Endpoint{Addr: lis.Addr().String()}, clientv3.WithLease(lease.ID)); err != nil {
		return err
	}
	cache := resolver.NewCache()
	defer cache.Close()
	wtarget := "etcd://" + endpoint + "/greeter?prefix=legacy"
	wconn, err := cache.NewClient(wtarget, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer wconn.Close()
	return call(ctx, out, "Wayfinder resolver, "+wtarget, wconn)
}

func call(ctx context.Context, out io.Writer, via string, conn *grpc.ClientConn) error {
	resp, err := hellopb.NewHelloServiceClient(conn).SayHello(ctx, &hellopb.HelloRequest{Name: "etcd"}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("%s: %w", via, err)
	}
	m := resp.GetMessage()
	fmt.Fprintf(out, "%s: answered by %s\n", via, m[strings.LastIndex(m, " ")+1:])
	return nil
}
