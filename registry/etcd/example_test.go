package etcd_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
)

// Open by URL: the usual way, the same as every other backend.
func Example() {
	ctx := context.Background()
	reg, err := registry.Open(ctx, "etcd://127.0.0.1:2379?ttl=10s")
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	inst := registry.Instance{ID: registry.NewID(), Service: "hello", Address: "10.0.0.7:50051"}
	if err := reg.Register(ctx, inst); err != nil {
		log.Fatal(err)
	}
	defer reg.Deregister(context.Background(), inst)
}

func ExampleNew() {
	reg, err := etcd.New([]string{"10.0.0.1:2379", "10.0.0.2:2379"},
		etcd.WithPrefix("/prod/services"),
		etcd.WithTTL(15*time.Second),
		etcd.WithAuth("wayfinder", "from-a-secret-store"),
		etcd.WithLogger(slog.Default()))
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
}

func ExampleRegistry_Watch() {
	ctx := context.Background()
	reg, err := etcd.New(nil) // ETCDCTL_ENDPOINTS, else 127.0.0.1:2379
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	w, err := reg.Watch(ctx, "hello")
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	for {
		set, err := w.Next(ctx)
		if err != nil {
			// Transient: the watcher keeps the last set and keeps trying.
			log.Printf("registry: %v", err)
			continue
		}
		fmt.Println(len(set), "instances")
	}
}

func ExampleRegistry_State() {
	reg, err := etcd.New([]string{"127.0.0.1:2379"})
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	// Log every change of registration health.
	for s := reg.State(); ; s = reg.State() {
		if !s.Healthy() {
			log.Printf("etcd registration: %d/%d written, lease %x: %v", s.Registered, s.Instances, s.Lease, s.Err)
		}
		<-s.Changed
	}
}
