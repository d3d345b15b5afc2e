// Package zone is Wayfinder's zone-aware policy, "wayfinder_zone_aware":
// calls stay in the client's zone while enough of it is healthy, spill
// over to other zones in proportion as it degrades, and fail over across
// zones in a configured order, with any other policy choosing inside
// each zone. It needs no xDS: zones come from the registry
// (registry.Instance.Zone).
//
// Import it for its side effect and select it in the service config:
//
//	import _ "github.com/wayfinder-rpc/wayfinder/balancer/zone"
//
//	{"loadBalancingConfig": [{"wayfinder_zone_aware": {
//	  "localZone": "eu-west-1a",
//	  "minLocalShare": 0.7,
//	  "failoverOrder": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
//	  "child": [{"wayfinder_p2c_ewma": {}}]
//	}}]}
//
// Use it when calls across zones cost latency or money and each zone has
// enough capacity for its own clients. When zones are small or load is
// uneven between them, prefer a plain policy: keeping calls local can
// overload a zone whose clients outnumber its servers.
//
// # Zones
//
// Each endpoint's zone is its instance's Zone; endpoints without one
// (not from Wayfinder's resolver, or registered without a zone) form the
// zone "". The local zone is Config.LocalZone or, if that is empty, the
// WAYFINDER_ZONE environment variable (EnvZone) read when the config is
// parsed. With neither, there is no local zone and calls spread over all
// zones by healthy capacity, in failoverOrder if one is given.
//
// # Spill-over and failover
//
// Zones are tried in levels: the local zone, then each zone of
// failoverOrder in turn (the local zone is skipped if listed, so one
// list can serve clients in every zone; zones without endpoints are
// skipped), then every other zone together. A level's health h is its
// healthy capacity over its total capacity, where capacity is the sum of
// the endpoints' registry weights (Instance.EffectiveWeight; an
// unweighted endpoint counts 1, so capacity is the endpoint count when
// no weights are set) and healthy means the endpoint's connection is
// READY and passes client-side health checks. Each level takes
//
//	min(1, h / minLocalShare)
//
// of the calls the levels before it left over; inside the last level,
// zones share by healthy capacity. So the local zone keeps every call
// while at least minLocalShare (default 0.7) of it is healthy, and below
// that keeps a share falling linearly to 0 as its health does, the rest
// going to the next level; when it has nothing healthy, calls fail over
// to the first level that has. This is Envoy's priority-level rule with
// an overprovisioning factor of 1/minLocalShare (its default 1.4 is
// 0.71 here). If every level is degraded, the shares are scaled up to
// sum to 1. When no zone has a healthy endpoint, calls wait while any
// zone is connecting and otherwise fail with the first level's error.
//
// A zone's health is counted by the policy itself, from the SubConns its
// children create; a zone whose child is not READY takes no calls, and a
// READY child whose SubConns the policy cannot see (a child without
// health listeners) counts at full capacity.
//
// # Children
//
// Each zone runs its own instance of the child policy (default
// round_robin) on the zone's endpoints only, so weights, P2C statistics
// or hash rings apply inside the zone. Endpoint updates, including a
// changed weight, reach the zone's child as resolver updates and do not
// reconnect; an endpoint that changes zone reconnects through its new
// zone's child, and changing the child policy rebuilds every zone.
// wayfinder_outlier_ejection belongs above this policy, not inside it,
// so that zones count ejected endpoints as unhealthy.
//
// # Inspection
//
// Package inspect, and so the debug page and package lbmetrics, shows
// each endpoint with its zone and state, the local zone, the order zones
// are tried in, each zone's healthy capacity and share of calls, and the
// mode: "local", "spill-over" (the local zone takes part of the calls),
// "failover" (it takes none) or "spread" (no local zone). Each zone's
// child policy, if a Wayfinder one, is shown inside it. While
// inspect.CountPicks is in effect this policy counts picks per endpoint,
// and its children do not.
//
// # Concurrency
//
// The picker takes no lock: it draws one random number to choose the
// zone, unless one zone takes every call, then calls that zone child's
// picker; with pick counting on, it also adds 1 to the endpoint's
// counter. gRPC serialises every other call into the balancer.
package zone
