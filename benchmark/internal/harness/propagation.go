package harness

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/polling"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
)

// propagation measures, through a real ClientConn (round_robin) and real
// servers, the time from Register returning until the first call reaches
// the new instance, and from Deregister returning until calls stop
// reaching it (the first of four misses in a row, with two endpoints).
// The add side includes the new connection's set-up. The watch, the
// 500 ms polling baseline and, on Consul, the blocking-query resolver
// that shares nothing (blockingBuilder), on etcd, etcd's own naming
// resolver (namingBuilder), run in the same run on the same registry.
// The floor, directVariant, is the same ClientConn and servers with no
// registry in the path: a manual resolver handed the new address set
// right after Register (Deregister) returns, so what is left is gRPC's
// own work (the new connection's set-up, the picker) and the calls'.
func propagation(tb testing.TB, be *Backend, cfg Config) ([]Sample, error) {
	var out []Sample
	variants := []struct {
		name  string
		poll  time.Duration
		phase time.Duration // random pause before each change
	}{
		{"wayfinder", 0, 200 * time.Millisecond},
		{"poll500ms", 500 * time.Millisecond, 500 * time.Millisecond},
		{directVariant, 0, 200 * time.Millisecond},
	}
	if be.consulAddr != nil {
		variants = append(variants, struct {
			name  string
			poll  time.Duration
			phase time.Duration
		}{"blocking", 0, 200 * time.Millisecond})
	}
	if be.etcd != nil {
		variants = append(variants, struct {
			name  string
			poll  time.Duration
			phase time.Duration
		}{namingVariant, 0, 200 * time.Millisecond})
	}
	for _, v := range variants {
		s, err := propagationOne(tb, be, cfg, v.name, v.poll, v.phase)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func propagationOne(tb testing.TB, be *Backend, cfg Config, variant string, poll, phase time.Duration) (Sample, error) {
	ctx := tb.Context()
	svc := uniqueService("prop")
	reg := be.Open(tb, nil) // the servers' client
	stable, moving := startHello(tb, "stable"), startHello(tb, "moving")
	if err := register(ctx, reg, stable.instance(svc), 10*time.Second); err != nil {
		return Sample{}, err
	}
	var client hellopb.HelloServiceClient
	var direct *manual.Resolver // directVariant's
	if variant == directVariant {
		direct = manual.NewBuilderWithScheme(directScheme)
		direct.InitialState(gresolver.State{Endpoints: instance.Endpoints([]registry.Instance{stable.instance(svc)})})
		// Not be.dialOpts: those map the addresses a registry holds
		// (Kubernetes: 10.244.x.y) to loopback and refuse the rest, and
		// the floor hands gRPC the loopback addresses themselves.
		_, client = dialDirect(tb, direct, svc)
	} else if variant == "blocking" {
		b, err := newBlockingBuilder(be.consulAddr(tb, nil), consul.DefaultWait)
		if err != nil {
			return Sample{}, err
		}
		_, client = dialBlocking(tb, b, svc)
	} else if variant == namingVariant {
		b, err := newNamingBuilder(tb, be, reg, nil)
		if err != nil {
			return Sample{}, err
		}
		_, client = dialNaming(tb, b, svc)
	} else {
		var disc registry.Discovery = be.Open(tb, nil)
		if poll > 0 {
			disc = polling.New(disc, poll)
		}
		_, client = dial(tb, disc, newCache(tb), svc, "round_robin", be.dialOpts...)
	}
	if err := waitServing(ctx, client, 20*time.Second, "stable"); err != nil {
		return Sample{}, err
	}
	in := moving.instance(svc)
	var add, del []time.Duration
	for range cfg.Changes {
		sleep(ctx, jitter(phase))
		t0 := time.Now()
		if err := reg.Register(ctx, in); err != nil {
			return Sample{}, err
		}
		wait := pushDirect(direct, stable.instance(svc), in)
		d, err := until(ctx, client, t0, func(name string) bool { return name == "moving" }, 1)
		wait()
		if err != nil {
			return Sample{}, fmt.Errorf("register: %w", err)
		}
		add = append(add, d)
		sleep(ctx, jitter(phase))
		t0 = time.Now()
		if err := reg.Deregister(ctx, in); err != nil {
			return Sample{}, err
		}
		wait = pushDirect(direct, stable.instance(svc))
		d, err = until(ctx, client, t0, func(name string) bool { return name != "moving" }, 4)
		wait()
		if err != nil {
			return Sample{}, fmt.Errorf("deregister: %w", err)
		}
		del = append(del, d)
	}
	m := map[string]float64{}
	putPercentiles(m, "register", add)
	putPercentiles(m, "deregister", del)
	putPercentiles(m, "all", append(add, del...))
	m["changes"] = float64(len(add) + len(del))
	return Sample{Variant: variant, Metrics: m, Notes: variantNotes(variant)}, nil
}

// until calls until streak calls in a row satisfy ok and returns the
// time from t0 to the first call of that streak. It gives up after 30 s.
func until(ctx context.Context, c hellopb.HelloServiceClient, t0 time.Time, ok func(string) bool, streak int) (time.Duration, error) {
	deadline := t0.Add(30 * time.Second)
	n := 0
	var first time.Time
	for time.Now().Before(deadline) {
		at := time.Now()
		name, err := call(ctx, c, 5*time.Second)
		if err != nil {
			return 0, err
		}
		if !ok(name) {
			n = 0
			continue
		}
		if n == 0 {
			first = at
		}
		if n++; n == streak {
			return first.Sub(t0), nil
		}
	}
	return 0, fmt.Errorf("no change seen within 30s")
}

// directVariant is propagation's floor: gRPC handed the addresses
// directly, through a manual resolver of scheme directScheme.
const (
	directVariant = "direct"
	directScheme  = "wfbench-direct"
)

// pushDirect hands r (if not nil) the set insts from a goroutine of its
// own, as a resolver's watch does, so that the calls measuring the change
// start at once rather than after gRPC has processed it; wait returns
// once the push has.
func pushDirect(r *manual.Resolver, insts ...registry.Instance) (wait func()) {
	if r == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() { // owned: the caller waits for it
		defer close(done)
		r.UpdateState(gresolver.State{Endpoints: instance.Endpoints(insts)})
	}()
	return func() { <-done }
}

// dialDirect returns a ClientConn for svc through the manual resolver r,
// with round_robin and the options dial uses, closed with tb.
func dialDirect(tb testing.TB, r *manual.Resolver, svc string, opts ...grpc.DialOption) (*grpc.ClientConn, hellopb.HelloServiceClient) {
	tb.Helper()
	cc, err := grpc.NewClient(directScheme+":///"+svc, append([]grpc.DialOption{
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`)}, opts...)...)
	if err != nil {
		tb.Fatalf("bench: NewClient: %v", err)
	}
	tb.Cleanup(func() { cc.Close() })
	return cc, hellopb.NewHelloServiceClient(cc)
}
