package registry_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/wayfinder-rpc/wayfinder/registry"
	_ "github.com/wayfinder-rpc/wayfinder/registry/memory" // mem:// URLs
)

// Open by URL, the same for every backend: "consul://127.0.0.1:8500" or
// "etcd://127.0.0.1:2379?ttl=10s" instead of "mem://" (see docs/consul.md
// and docs/etcd.md). A server registers an instance, a client looks the
// service up, and the server deregisters on the way out.
func ExampleOpen() {
	ctx := context.Background()
	reg, err := registry.Open(ctx, "mem://example-open")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Close()
	inst := registry.Instance{ID: "hello-1", Service: "hello", Address: "10.0.0.7:50051", Zone: "eu-west-1a"}
	if err := reg.Register(ctx, inst); err != nil {
		fmt.Println(err)
		return
	}
	insts, err := reg.Lookup(ctx, "hello")
	fmt.Println(insts, err)
	if err := reg.Deregister(ctx, inst); err != nil {
		fmt.Println(err)
		return
	}
	insts, err = reg.Lookup(ctx, "hello")
	fmt.Println(insts, err)
	// Output:
	// [hello/hello-1@10.0.0.7:50051] <nil>
	// [] <nil>
}

// A client watches a service: Next returns the full current set, at once
// the first time and then whenever it changes. Any other error than
// ErrClosed or the context's is transient: the last set is still valid,
// and the watcher keeps trying.
func ExampleWatcher() {
	ctx := context.Background()
	reg, err := registry.Open(ctx, "mem://example-watch")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Close()
	w, err := reg.Watch(ctx, "hello")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, id := range []string{"hello-1", "hello-2"} {
		insts, err := w.Next(ctx)
		if err != nil {
			fmt.Println("transient:", err) // keep the last set
			continue
		}
		fmt.Println(len(insts), "instances")
		_ = reg.Register(ctx, registry.Instance{ID: id, Service: "hello", Address: "10.0.0.7:50051"})
	}
	insts, _ := w.Next(ctx)
	fmt.Println(insts)
	w.Close()
	_, err = w.Next(ctx)
	fmt.Println(errors.Is(err, registry.ErrClosed))
	// Output:
	// 0 instances
	// 1 instances
	// [hello/hello-1@10.0.0.7:50051 hello/hello-2@10.0.0.7:50051]
	// true
}
