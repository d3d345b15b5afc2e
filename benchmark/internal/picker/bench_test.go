package picker_test

import (
	"flag"
	"sync/atomic"
	"testing"

	_ "google.golang.org/grpc/balancer/leastrequest" // least_request_experimental
	_ "google.golang.org/grpc/balancer/ringhash"     // ring_hash_experimental
	_ "google.golang.org/grpc/balancer/roundrobin"   // round_robin

	"github.com/wayfinder-rpc/wayfinder/balancer/custom"
	"github.com/wayfinder-rpc/wayfinder/balancer/hash"
	"github.com/wayfinder-rpc/wayfinder/balancer/outlier"
	"github.com/wayfinder-rpc/wayfinder/balancer/p2c"
	"github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	"github.com/wayfinder-rpc/wayfinder/balancer/zone"
	"github.com/wayfinder-rpc/wayfinder/benchmark/internal/picker"
)

// userRR is what a user might write with package custom: plain round
// robin, to measure the wrapper's overhead.
const userRR = "benchcmp_user_round_robin"

func init() {
	var next atomic.Uint64
	custom.Register(userRR, func(_ custom.Call, ready []custom.Endpoint) (int, error) {
		return int(next.Add(1) % uint64(len(ready))), nil
	})
}

var policies = []picker.Policy{
	{Name: "round_robin"},
	{Name: wrr.Name},
	{Name: p2c.Name},
	{Name: hash.Name},
	{Name: userRR},
	// Both wrap round_robin by default, so they measure their own cost
	// on top of it.
	{Name: zone.Name},
	{Name: outlier.Name},
}

// alternatives are grpc-go's built-ins of the same purpose, configured
// as a user outside xDS would. weighted_round_robin (which needs the
// ORCA protos of github.com/cncf/xds) and outlier_detection_experimental
// (which registers only with google.golang.org/grpc/xds) are measured in
// the separate module in ./xds, so that neither enters this module's
// build or go.sum.
var alternatives = []picker.Pair{
	{Wayfinder: picker.Policy{Name: p2c.Name}, Alternative: picker.Policy{Name: "least_request_experimental"}},
	// Both hash the same header; ring_hash has no other key outside xDS.
	{Wayfinder: picker.Policy{Label: hash.Name + "_header", Name: hash.Name, Config: `{"header":"` + picker.HashHeader + `"}`},
		Alternative: picker.Policy{Name: "ring_hash_experimental", Config: `{"requestHashHeader":"` + picker.HashHeader + `"}`}},
}

// all is every policy of policies and alternatives once.
func all() []picker.Policy {
	out := append([]picker.Policy(nil), policies...)
	for _, pr := range alternatives {
		if pr.Wayfinder.Label != "" {
			out = append(out, pr.Wayfinder)
		}
		out = append(out, pr.Alternative)
	}
	return out
}

// large adds 10,000 endpoints to BenchmarkPick. fakecc delivers each
// READY as its own update, as gRPC does, so every policy builds one
// picker per endpoint while they connect: O(n²), about 50s per policy at
// 10,000 on two cores.
var large = flag.Bool("large", false, "BenchmarkPick also with 10,000 endpoints (setup takes minutes)")

func BenchmarkPick(b *testing.B) {
	sizes := []int{3, 10, 100, 1000}
	if *large {
		sizes = append(sizes, 10000)
	}
	picker.Pick(b, all(), sizes)
}

// BenchmarkUpdate is the cost to the policy of one instance changing in a
// service of 5,000 (see picker.Update).
func BenchmarkUpdate(b *testing.B) {
	picker.Update(b, []picker.Policy{{Name: "round_robin"}, {Name: p2c.Name}, {Name: wrr.Name}, {Name: hash.Name}}, []int{5000})
}

func BenchmarkThroughput(b *testing.B) { picker.Throughput(b, all()) }

func BenchmarkVersus(b *testing.B) { picker.Versus(b, alternatives) }
