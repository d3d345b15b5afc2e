// Package example runs the in-process backends the balancer packages'
// Examples call: HelloService servers on 127.0.0.1:0 that answer with
// their name, registered in a named memory store, so that an Example
// dials "mem://<store>/hello" and prints which backends answered. It is
// a plain package, not a _test.go file, because Examples live in each
// policy's own test package.
package example

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
)

// Service is the service the backends register as.
const Service = "hello"

// Backend is one server; its instance's ID is its name.
type Backend struct {
	hellopb.UnimplementedHelloServiceServer
	Inst registry.Instance

	failing atomic.Bool
	srv     *grpc.Server
}

// SayHello answers with the backend's name, or UNAVAILABLE if failing.
func (b *Backend) SayHello(context.Context, *hellopb.HelloRequest) (*hellopb.HelloResponse, error) {
	if b.failing.Load() {
		return nil, status.Error(codes.Unavailable, b.Inst.ID+" is failing")
	}
	return &hellopb.HelloResponse{Message: b.Inst.ID}, nil
}

// SetFailing makes the backend answer UNAVAILABLE, or stops that.
func (b *Backend) SetFailing(f bool) { b.failing.Store(f) }

// Stop stops the server, leaving it registered, as a crash would.
func (b *Backend) Stop() { b.srv.Stop() }

// Start starts one backend per instance, whose ID names it and whose
// Service and Address Start fills in, registers them in the memory store
// named store, and returns them with a function that deregisters and
// stops them. It panics on error: Examples have no t to fail.
func Start(store string, insts ...registry.Instance) ([]*Backend, func()) {
	reg := memory.Named(store).Open()
	bs := make([]*Backend, len(insts))
	for i, inst := range insts {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		inst.Service, inst.Address = Service, lis.Addr().String()
		b := &Backend{Inst: inst, srv: grpc.NewServer()}
		hellopb.RegisterHelloServiceServer(b.srv, b)
		go b.srv.Serve(lis) // returns at Stop
		if err := reg.Register(context.Background(), inst); err != nil {
			panic(err)
		}
		bs[i] = b
	}
	return bs, func() {
		for _, b := range bs {
			_ = reg.Deregister(context.Background(), b.Inst)
			b.srv.Stop()
		}
		reg.Close()
	}
}

// Call makes one call and returns the name of the backend that answered.
func Call(ctx context.Context, c hellopb.HelloServiceClient) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := c.SayHello(ctx, &hellopb.HelloRequest{Name: "example"})
	return r.GetMessage(), err
}

// Counts makes n calls one after another and counts the answers by
// backend; failed calls count as "error".
func Counts(ctx context.Context, c hellopb.HelloServiceClient, n int) map[string]int {
	out := map[string]int{}
	for range n {
		name, err := Call(ctx, c)
		if err != nil {
			name = "error"
		}
		out[name]++
	}
	return out
}

// Names returns the backends in counts, sorted.
func Names(counts map[string]int) []string { return slices.Sorted(maps.Keys(counts)) }

// WaitFor calls until cond, given the backend that answered each call
// (or "error"), holds; it panics after 20s. Examples wait for the
// client to see what they set up, never for a duration.
func WaitFor(ctx context.Context, c hellopb.HelloServiceClient, what string, cond func(name string) bool) {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		name, err := Call(ctx, c)
		if err != nil {
			name = "error"
		}
		if cond(name) {
			return
		}
	}
	panic(fmt.Sprintf("example: timed out waiting for %s", what))
}

// WaitServing calls until every one of names has answered.
func WaitServing(ctx context.Context, c hellopb.HelloServiceClient, names ...string) {
	seen := map[string]bool{}
	WaitFor(ctx, c, fmt.Sprintf("calls to reach %v", names), func(name string) bool {
		if slices.Contains(names, name) {
			seen[name] = true
		}
		return len(seen) == len(names)
	})
}
