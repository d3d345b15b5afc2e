package resolver_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

func subsetInstances(n int) []registry.Instance {
	out := make([]registry.Instance, n)
	for i := range out {
		out[i] = registry.Instance{ID: fmt.Sprintf("orders-%d", i), Service: "orders", Address: fmt.Sprintf("10.0.0.%d:80", i+1)}
	}
	return out
}

func subsetIDs(insts []registry.Instance) []string {
	ids := make([]string, len(insts))
	for i, in := range insts {
		ids[i] = in.ID
	}
	slices.Sort(ids)
	return ids
}

// TestSubsetDeterministic: the same key and instances, in any order,
// give the same subset; other keys give other subsets.
func TestSubsetDeterministic(t *testing.T) {
	insts := subsetInstances(20)
	want := subsetIDs(resolver.ConnectionSubset(insts, 5, "client-a"))
	if len(want) != 5 {
		t.Fatalf("ConnectionSubset(20 instances, 5) has %d members", len(want))
	}
	for range 10 {
		shuffled := slices.Clone(insts)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := subsetIDs(resolver.ConnectionSubset(shuffled, 5, "client-a")); !slices.Equal(got, want) {
			t.Fatalf("ConnectionSubset of shuffled instances = %v, want %v", got, want)
		}
	}
	differ := 0
	for i := range 20 {
		if !slices.Equal(subsetIDs(resolver.ConnectionSubset(insts, 5, fmt.Sprintf("client-%d", i))), want) {
			differ++
		}
	}
	if differ < 15 {
		t.Errorf("only %d of 20 other keys got a different subset", differ)
	}
	if got := resolver.ConnectionSubset(insts[:3], 5, "client-a"); len(got) != 3 {
		t.Errorf("ConnectionSubset(3 instances, 5) = %d instances, want all 3", len(got))
	}
	if got := resolver.ConnectionSubset(insts, 0, "client-a"); len(got) != 20 {
		t.Errorf("ConnectionSubset(size 0) = %d instances, want all 20", len(got))
	}
}

// TestSubsetStable: removing an instance outside the subset changes
// nothing; removing a member replaces exactly it; adding an instance
// changes at most one member. Checked for many keys.
func TestSubsetStable(t *testing.T) {
	insts := subsetInstances(20)
	for k := range 200 {
		key := fmt.Sprintf("pod-%d", k)
		before := subsetIDs(resolver.ConnectionSubset(insts, 5, key))
		for i := range insts {
			rest := slices.Delete(slices.Clone(insts), i, i+1)
			after := subsetIDs(resolver.ConnectionSubset(rest, 5, key))
			kept := 0
			for _, id := range after {
				if slices.Contains(before, id) {
					kept++
				}
			}
			if slices.Contains(before, insts[i].ID) {
				if kept != 4 {
					t.Fatalf("%s: removing member %s kept %d of the other 4 members: %v -> %v", key, insts[i].ID, kept, before, after)
				}
			} else if kept != 5 {
				t.Fatalf("%s: removing non-member %s changed the subset: %v -> %v", key, insts[i].ID, before, after)
			}
		}
		grown := append(slices.Clone(insts), registry.Instance{ID: "orders-new", Service: "orders", Address: "10.0.1.1:80"})
		after := subsetIDs(resolver.ConnectionSubset(grown, 5, key))
		kept := 0
		for _, id := range after {
			if slices.Contains(before, id) {
				kept++
			}
		}
		if kept < 4 {
			t.Fatalf("%s: adding an instance kept %d of 5 members: %v -> %v", key, kept, before, after)
		}
	}
}

// TestSubsetSpread: over 1000 keys, each of 10 instances is in about
// 3/10 of the subsets of size 3 (300; a binomial's sd is about 14).
func TestSubsetSpread(t *testing.T) {
	insts := subsetInstances(10)
	count := map[string]int{}
	for k := range 1000 {
		for _, in := range resolver.ConnectionSubset(insts, 3, fmt.Sprintf("pod-%d", k)) {
			count[in.ID]++
		}
	}
	for _, in := range insts {
		if n := count[in.ID]; n < 220 || n > 380 {
			t.Errorf("%s is in %d of 1000 subsets, want about 300: %v", in.ID, n, count)
		}
	}
}

// TestSubsetThroughGRPC: with WithConnectionSubset(2), a real ClientConn calls
// exactly the 2 servers Subset names for its key, of 5; deregistering
// a server outside the subset leaves it calling the same 2.
func TestSubsetThroughGRPC(t *testing.T) {
	reg := memory.New()
	defer reg.Close()
	byID := map[string]string{} // instance ID -> server name
	var insts []registry.Instance
	for i := range 5 {
		s := testenv.StartHello(t, fmt.Sprintf("s%d", i))
		in := registry.Instance{ID: fmt.Sprintf("id-%d", i), Service: "hello", Address: s.Addr}
		if err := reg.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
		byID[in.ID] = s.Name
		insts = append(insts, in)
	}
	const key = "client-7"
	var want []string
	for _, in := range resolver.ConnectionSubset(insts, 2, key) {
		want = append(want, byID[in.ID])
	}
	cc, err := grpc.NewClient("wayfinder:///hello",
		grpc.WithResolvers(resolver.NewBuilder(reg, resolver.WithCache(newCache(t)), resolver.WithConnectionSubset(2, key))),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := hellopb.NewHelloServiceClient(cc)
	waitForServers(t, client, want...)

	for _, in := range insts {
		if !slices.Contains(want, byID[in.ID]) {
			if err := reg.Deregister(t.Context(), in); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	waitForServers(t, client, want...)
}

func ExampleConnectionSubset() {
	var insts []registry.Instance
	for i := range 6 {
		insts = append(insts, registry.Instance{ID: fmt.Sprintf("orders-%d", i), Service: "orders", Address: fmt.Sprintf("10.0.0.%d:80", i+1)})
	}
	// The two instances the client "pod-a" connects to under
	// WithConnectionSubset(2, "pod-a"): the same in every process.
	for _, in := range resolver.ConnectionSubset(insts, 2, "pod-a") {
		fmt.Println(in.ID)
	}
	// Output:
	// orders-0
	// orders-4
}
