// Package outlier is Wayfinder's outlier ejection policy,
// "wayfinder_outlier_ejection": it wraps any other policy and takes
// endpoints that keep failing out of its choice for a while, without
// xDS.
//
// Import it for its side effect and select it in the service config,
// with the policy that chooses among the endpoints left as its child:
//
//	import _ "github.com/wayfinder-rpc/wayfinder/balancer/outlier"
//
//	{"loadBalancingConfig": [{"wayfinder_outlier_ejection": {
//	  "child": [{"wayfinder_p2c_ewma": {}}],
//	  "consecutiveFailures": 5,
//	  "baseEjectionTime": "30s",
//	  "maxEjectionPercent": 10
//	}}]}
//
// Use it when a backend can be up but broken (it answers UNAVAILABLE or
// INTERNAL at once, or hangs until deadlines expire) and the registry
// and health checks do not notice: round robin and weighted round robin
// would keep sending it their share; P2C steers away from it but still
// probes it. Ejection stops the calls altogether for a growing interval.
//
// # Detection
//
// A call counts as failed when it ends with UNAVAILABLE,
// DEADLINE_EXCEEDED, INTERNAL, UNKNOWN or DATA_LOSS (see IsFailure);
// any other outcome, including application errors such as NOT_FOUND,
// counts as a success. Unlike P2C's error penalty, DEADLINE_EXCEEDED
// counts, since ejection sees no latency and a host that hangs shows
// only by it, and RESOURCE_EXHAUSTED does not: it is as often a
// per-caller quota or an oversized message as a bad host, and ejecting
// healthy hosts for it moves the load onto fewer. An endpoint is ejected when either
//
//   - consecutiveFailures calls in a row failed (default 5; checked as
//     soon as the threshold is reached), or
//   - failureRateThreshold (0..1, default 0: off) of its calls failed
//     over one interval (default 10s), if it had at least
//     minimumRequests calls (default 20) in that interval.
//
// # Ejection
//
// The n-th ejection in a row lasts n × baseEjectionTime (default 30s),
// capped by maxEjectionTime (default 5m); each interval that passes
// without a new ejection lowers n by one. No more than
// maxEjectionPercent (default 10) of the endpoints are ejected at once,
// rounded down, but one endpoint may always be ejected, as in Envoy;
// 0 disables ejection. Candidates beyond the cap stay in service until a
// slot frees.
//
// An ejected endpoint keeps its connection: the policy reports its
// health as TRANSIENT_FAILURE to the child, exactly as a failed
// client-side health check would, so the child stops picking it, and
// reports the real health again when the ejection ends. The child must
// therefore run pick_first with the health listener enabled, as
// round_robin and every Wayfinder policy do. If every endpoint is
// ejected (maxEjectionPercent 100), calls fail as when none is ready.
//
// Counts are per endpoint, keyed by its first address, and survive
// resolver updates that keep the address. Ejecting goes through the
// child's health listener, so place this policy above
// wayfinder_zone_aware, not below it, if zones should see ejected
// endpoints as unhealthy capacity:
//
//	[{"wayfinder_outlier_ejection": {"child": [{"wayfinder_zone_aware": {}}]}}]
//
// # Inspection
//
// Package inspect, and so the debug page and package lbmetrics, shows
// each endpoint's connectivity state (an ejected endpoint stays READY),
// whether it is ejected, its consecutive failures, and the ejections so
// far; the child policy, if a Wayfinder one, is shown inside it. While
// inspect.CountPicks is in effect this policy counts picks per endpoint,
// and its child does not.
//
// # Concurrency
//
// The picker takes no lock: it delegates to the child's picker and
// counts with atomics in the Done callback, which it allocates only when
// the child sets one too. One goroutine per balancer, stopped by Close,
// decides ejections and returns.
package outlier
