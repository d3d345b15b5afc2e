package xds_test

import (
	"testing"

	_ "google.golang.org/grpc/balancer/roundrobin"         // round_robin
	_ "google.golang.org/grpc/balancer/weightedroundrobin" // weighted_round_robin
	_ "google.golang.org/grpc/xds"                         // outlier_detection_experimental

	"github.com/wayfinder-rpc/wayfinder/balancer/outlier"
	"github.com/wayfinder-rpc/wayfinder/balancer/wrr"
	"github.com/wayfinder-rpc/wayfinder/benchmark/internal/picker"
)

// alternatives are configured as a user outside xDS would.
var alternatives = []picker.Pair{
	// Without ORCA load reports from the servers, weighted_round_robin
	// weighs every endpoint alike; Wayfinder's takes the registry's
	// weights.
	{Wayfinder: picker.Policy{Name: wrr.Name}, Alternative: picker.Policy{Name: "weighted_round_robin"}},
	// Both over round_robin. Wayfinder's ejects on consecutive failures
	// by default; grpc's has no such rule, and without an ejection
	// method configured its picker counts nothing, so it gets the
	// failure-percentage method with its defaults.
	{Wayfinder: picker.Policy{Name: outlier.Name}, Alternative: picker.Policy{Name: "outlier_detection_experimental",
		Config: `{"childPolicy":[{"round_robin":{}}],"failurePercentageEjection":{}}`}},
}

func all() []picker.Policy {
	out := []picker.Policy{{Name: "round_robin"}}
	for _, pr := range alternatives {
		out = append(out, pr.Wayfinder, pr.Alternative)
	}
	return out
}

func BenchmarkPick(b *testing.B) { picker.Pick(b, all(), []int{3, 10, 100, 1000}) }

// BenchmarkThroughput measures only the alternatives against round_robin:
// the Wayfinder policies' figures are in the other module's.
func BenchmarkThroughput(b *testing.B) {
	var alts []picker.Policy
	for _, pr := range alternatives {
		alts = append(alts, pr.Alternative)
	}
	picker.Throughput(b, alts)
}

func BenchmarkVersus(b *testing.B) { picker.Versus(b, alternatives) }
