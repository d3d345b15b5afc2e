// Package wrr is Wayfinder's weighted round-robin policy,
// "wayfinder_weighted_round_robin": each ready endpoint gets calls in
// proportion to its registry weight (registry.Instance.Weight), smoothly
// interleaved, with no bursts to one endpoint.
//
// Import it for its side effect and select it in the service config:
//
//	import _ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"
//
//	grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_weighted_round_robin":{}}]}`)
//
// # Weights
//
// Weights come from the instance on each endpoint. An instance with
// Weight 0 (not set) gets Config.DefaultWeight, 1 unless configured; so
// does an endpoint that was not made by Wayfinder's resolver and carries
// no grpc weight attribute. A weight change in the registry reaches the
// picker with the next resolver update and does not reconnect: the
// endpoint keeps its connection, only the schedule is rebuilt.
//
// # Scheduling
//
// The schedule is a precomputed table in which each endpoint's slots are
// evenly spaced (earliest-deadline-first order). A pick costs one atomic
// add and one table load, independent of the number of endpoints and of
// the weights. The table is exact when the weights' reduced sum fits in
// max(4096, 16n) slots and scaled to fit otherwise; it is rebuilt, off
// the pick path, when the set of ready endpoints or their weights change.
//
// # Load reports
//
// With Config.LoadReports set (`{"loadReports":{}}`, off by default) the
// policy blends the registry weight with the ORCA load reports in each
// call's trailer (servers built with server.WithLoadReports): endpoint i
// weighs r_i × c_i / mean(c), where c_i = qps_i / (u_i + penalty ×
// eps_i/qps_i) is its capacity as in gRFC A58 (u: application
// utilisation, else CPU, or the named utilisation Metric; qps: the
// reported rps_fractional, else this client's rate of calls to it). A
// report weighs after the endpoint has reported for BlackoutPeriod (10s)
// and until it is WeightExpirationPeriod (3m) old; an endpoint without
// usable reports gets the mean, so with none at all the weights are the
// registry's. The schedule is rebuilt every WeightUpdatePeriod (1s) by a
// goroutine the balancer owns and stops on Close; a pick then costs one
// more atomic load and a Done that stores the report. docs/orca.md has
// the details and figures.
//
// # Concurrency
//
// Pickers are lock-free. See package shard for the balancer's locking.
package wrr
