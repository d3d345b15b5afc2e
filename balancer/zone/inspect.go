package zone

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/connectivity"

	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
)

// describe reports, for package inspect, the local zone, the order zones
// are tried in, each zone's healthy capacity and share of calls, whether
// calls stay local, spill over or fail over, and every endpoint with its
// zone and state.
func (b *balancer) describe(ib *inspect.Balancer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ib.CountsPicks, ib.Picks = b.countPicks, b.picks.Total()
	label := func(zone string) string {
		if zone == "" {
			return "(none)"
		}
		return zone
	}
	lv := levels(b.zones, b.cfg.LocalZone, b.cfg.FailoverOrder)
	targets, weights := plan(lv, b.cfg.MinLocalShare)
	sum := 0.0
	for _, w := range weights {
		sum += w
	}
	share := map[string]float64{}
	for i, z := range targets {
		share[z.name] = weights[i] / sum
	}
	stats := map[string]string{"local_zone": label(b.cfg.LocalZone)}
	if b.cfg.LocalZone == "" {
		stats["local_zone"] = "(not set)"
	}
	var order []string
	for _, level := range lv {
		names := make([]string, len(level))
		for i, z := range level {
			names[i] = label(z.name)
			stats["share."+label(z.name)] = strconv.FormatFloat(100*share[z.name], 'f', 1, 64) + "%"
			stats["healthy."+label(z.name)] = fmt.Sprintf("%d/%d", z.healthyCapacity(), z.total)
		}
		order = append(order, strings.Join(names, "+"))
	}
	stats["order"] = strings.Join(order, " > ")
	_, hasLocal := b.zones[b.cfg.LocalZone]
	switch local := share[b.cfg.LocalZone]; {
	case len(targets) == 0:
		stats["mode"] = "no zone ready"
	case b.cfg.LocalZone == "":
		stats["mode"] = "spread" // no local zone: by failover order and healthy capacity
	case !hasLocal:
		stats["mode"] = "failover" // the local zone has no endpoints
	case local >= 1:
		stats["mode"] = "local"
	case local > 0:
		stats["mode"] = "spill-over"
	default:
		stats["mode"] = "failover"
	}
	ib.Stats = stats
	var out []inspect.Endpoint
	for _, name := range slices.Sorted(maps.Keys(b.zones)) {
		z := b.zones[name]
		var eps []*endpoint
		for addr, e := range z.byAddr {
			if e.addr == addr {
				eps = append(eps, e)
			}
		}
		slices.SortFunc(eps, func(x, y *endpoint) int { return strings.Compare(x.addr, y.addr) })
		for _, e := range eps {
			state := connectivity.Idle // no SubConn yet
			for i, sc := range e.subConns {
				s := sc.Data.raw
				if s == connectivity.Ready && sc.Data.watched {
					s = sc.Data.health
				}
				if i == 0 {
					state = s
				} else {
					state = shard.BetterState(state, s)
				}
			}
			out = append(out, inspect.Endpoint{Addr: e.addr, Instance: e.id, Zone: name, State: state.String(),
				Weight: uint32(e.weight), Picks: e.picks.Load()})
		}
	}
	ib.Endpoints = out
}
