// Command xdsclient is the tests' grpc-go xDS client: it calls the
// HelloService through an xds:/// target, one call after another, and
// prints one line per call ("ok <server name>" or "err <code> <message>")
// until its standard input closes. It runs as a child process because
// grpc-go reads its xDS bootstrap (GRPC_XDS_BOOTSTRAP_CONFIG) once, at
// process start.
//
// The first call waits for the channel to be ready (-wait, and so every
// call until one succeeds); every later call is
// fail-fast with a deadline, so that a call that cannot be served counts
// as failed rather than waiting. With -header name=value, every call
// carries that request header (for a ring_hash route that hashes on it).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	_ "google.golang.org/grpc/xds" // the xds:/// resolver and the xDS policies

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
)

func main() {
	target := flag.String("target", "xds:///hello", "the target to call")
	timeout := flag.Duration("timeout", 5*time.Second, "the deadline of each call")
	firstWait := flag.Duration("wait", time.Minute, "the deadline of the calls that wait for the channel to be ready, until one succeeds")
	header := flag.String("header", "", "`name=value`: a request header every call carries")
	flag.Parse()
	var md []string
	if *header != "" {
		k, v, ok := strings.Cut(*header, "=")
		if !ok {
			fmt.Fprintln(os.Stderr, "xdsclient: -header: want name=value")
			os.Exit(2)
		}
		md = []string{k, v}
	}
	if err := run(*target, *timeout, *firstWait, md); err != nil {
		fmt.Fprintln(os.Stderr, "xdsclient:", err)
		os.Exit(1)
	}
}

func run(target string, timeout, firstWait time.Duration, md []string) error {
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), md...))
	defer cancel()
	go func() {
		// The parent ends the client by closing its standard input.
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	client := hellopb.NewHelloServiceClient(cc)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	first := true
	for ctx.Err() == nil {
		callCtx, done := context.WithTimeout(ctx, timeout)
		if first {
			callCtx, done = context.WithTimeout(ctx, firstWait)
		}
		reply, err := client.SayHello(callCtx, &hellopb.HelloRequest{Name: "xds", Num1: 1, Num2: 2}, grpc.WaitForReady(first))
		done()
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			st := status.Convert(err)
			fmt.Fprintf(out, "err %s %s\n", st.Code(), strings.ReplaceAll(st.Message(), "\n", " "))
		} else {
			first = false
			msg := reply.GetMessage()
			fmt.Fprintf(out, "ok %s\n", msg[strings.LastIndex(msg, " ")+1:])
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
	return nil
}
