package multi_test

import (
	"context"
	"fmt"

	"github.com/wayfinder-rpc/wayfinder/registry"
	_ "github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/registry/multi"
)

// A server registers through a dual-writing multi registry; a client of
// the old registry alone, one of the new alone and one of both all find
// it, and the two registries hold the same.
func Example() {
	ctx := context.Background()
	dual, err := registry.Open(ctx, "multi://?read=mem://old&write=mem://old,mem://new")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dual.Close()
	if err := dual.Register(ctx, registry.Instance{ID: "hello-1", Service: "hello", Address: "127.0.0.1:50051"}); err != nil {
		fmt.Println(err)
		return
	}
	for _, raw := range []string{"mem://old", "mem://new", "multi://?read=mem://old,mem://new"} {
		r, err := registry.Open(ctx, raw)
		if err != nil {
			fmt.Println(err)
			return
		}
		insts, err := r.Lookup(ctx, "hello")
		r.Close()
		fmt.Println(raw, insts, err)
	}
	old, _ := registry.Open(ctx, "mem://old")
	defer old.Close()
	nw, _ := registry.Open(ctx, "mem://new")
	defer nw.Close()
	rep, err := multi.Diff(ctx, old, nw)
	fmt.Println("equal:", rep.Equal(), rep.Services, "service(s),", rep.Instances, "instance(s)", err)
	// Output:
	// mem://old [hello/hello-1@127.0.0.1:50051] <nil>
	// mem://new [hello/hello-1@127.0.0.1:50051] <nil>
	// multi://?read=mem://old,mem://new [hello/hello-1@127.0.0.1:50051] <nil>
	// equal: true 1 service(s), 1 instance(s) <nil>
}
