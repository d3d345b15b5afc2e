// Package lbmetrics exports OpenTelemetry metrics for Wayfinder's
// load-balancing policies, read from package inspect when the metrics
// are collected:
//
//	stop, err := lbmetrics.Register(meterProvider, lbmetrics.WithPickCounts())
//	defer stop()
//
// # Metrics
//
//   - wayfinder.lb.picks ({pick}, counter): calls picked, per target and
//     policy; only with WithPickCounts or WithEndpointLabels, and only
//     for balancers that built a picker since.
//   - wayfinder.lb.ejections ({ejection}, counter): outlier ejections,
//     per target.
//   - wayfinder.lb.ejected ({endpoint}, gauge): endpoints ejected now,
//     per target.
//   - wayfinder.lb.endpoints ({endpoint}, gauge): endpoints per
//     connectivity state (wayfinder.state: READY, CONNECTING, IDLE,
//     TRANSIENT_FAILURE), per target and policy. An ejected endpoint
//     keeps its connection and counts as READY here.
//
// Attributes are wayfinder.target (the ClientConn's dial target, such as
// "wayfinder:///orders") and wayfinder.policy (the policy's package name:
// wrr, p2c, hash, route, custom, zone, outlier), so cardinality is
// bounded by the ClientConns in the process. Never an instance ID or
// address unless WithEndpointLabels asks for it. Series of a ClientConn
// disappear when it closes; several ClientConns with the same target and
// policy are summed.
//
// A policy nested in another (a child of outlier ejection or
// zone-aware) reports its own endpoints gauge under its own
// wayfinder.policy, but its picks are counted once, by the outermost
// Wayfinder policy. grpc's own policies (round_robin, pick_first) are
// not seen unless a Wayfinder policy wraps them.
//
// # Cost
//
// Nothing is computed on the pick path unless picks are counted: then
// one atomic add per pick, on a counter per endpoint (see
// inspect.CountPicks). Collection walks every live balancer under its
// lock, as the debug page does.
package lbmetrics
