// Package p2c is Wayfinder's power-of-two-choices policy with peak-EWMA
// latency, "wayfinder_p2c_ewma": each call goes to the less loaded of
// two ready endpoints drawn at random, where load is latency times
// outstanding calls. Use it when backends differ in speed or slow down
// under load: it steers away from slow or failing backends within a few
// calls, without configuration.
//
//	import _ "github.com/wayfinder-rpc/wayfinder/balancer/p2c"
//
//	grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"wayfinder_p2c_ewma":{"decay":"10s"}}]}`)
//
// # Scoring
//
// An endpoint's latency estimate is a peak EWMA (Finagle, Linkerd): a
// slower call replaces the estimate at once, faster ones pull it down
// with time constant Config.Decay, and it decays toward zero while the
// endpoint is not picked, so a backend avoided for being slow is tried
// again after a few decay periods. The estimate is at least the mean age
// of the calls in flight, so a backend that stalls looks slow before its
// first answer. A call failing with UNAVAILABLE, INTERNAL, UNKNOWN,
// RESOURCE_EXHAUSTED or DATA_LOSS counts as taking at least
// Config.ErrorPenalty, so a backend that fails fast does not look
// healthy; other codes are the application's answers and count as
// latency only. DEADLINE_EXCEEDED is not penalised, unlike under outlier
// ejection: such a call already took its whole deadline, which its
// latency records, and a penalty would punish endpoints for callers'
// short deadlines; RESOURCE_EXHAUSTED is, as load shed by the endpoint. The score is (latency + 1ns) × (in-flight + 1).
//
// A new endpoint starts at the mean estimate of the others.
//
// # Load reports
//
// With Config.LoadReports set (`{"loadReports":{}}`, off by default) the
// two candidates are drawn in proportion to each endpoint's blended
// weight instead of uniformly: the registry weight times the capacity
// its ORCA load reports imply, over the mean (the formula, blackout and
// expiry of package wrr's load reports, which share the code). The less
// loaded candidate still wins, so an endpoint that reports itself busy
// is offered less often, and one that is slow or failing is still
// avoided within a few calls. The candidate array, with each endpoint
// repeated in proportion to its weight (8 slots per endpoint on
// average), is rebuilt every WeightUpdatePeriod by a goroutine the
// balancer owns; a pick pays one more atomic load and a Done that
// stores the call's report. Without LoadReports the picker and its cost
// are unchanged, and registry weights are ignored.
//
// # State
//
// Statistics are kept per endpoint address in the balancer and handed to
// every new picker, so they survive picker rebuilds (another endpoint
// connecting or failing) and registry updates (instances added, removed
// or re-weighted); they are dropped only when the address leaves the
// resolver's set.
//
// # Concurrency
//
// Picks take no lock: they read each endpoint's atomics, and draw one
// random word per pick from math/rand/v2's per-thread source.
//
// # Cost
//
// Reading the system clock costs 25-60 ns on VMs, more than the rest of a
// pick, and timing a call needs two reads and a closure. So the policy
// reads a process-wide coarse clock, refreshed every millisecond by one
// goroutine that runs only while P2C balancers exist and calls arrive,
// and times one call in 16 chosen at random while that clock is running;
// the others cost no clock read and no allocation. When calls are rare
// the clock is parked, every read is exact and every call is timed.
// Failures are charged on every call, timed or not, and in-flight counts
// cover every call, so sampling delays only how fast a slowdown without
// errors is seen: by about 16 calls to the endpoint.
package p2c
