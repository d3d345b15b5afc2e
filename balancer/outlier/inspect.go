package outlier

import (
	"maps"
	"slices"
	"strconv"

	"google.golang.org/grpc/connectivity"

	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
)

// describe reports each address's connectivity and ejection state, and
// the picks and ejections counted, for package inspect.
func (b *balancer) describe(ib *inspect.Balancer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ib.CountsPicks, ib.Picks, ib.Ejections = b.countPicks, b.picks.Total(), b.ejections
	out := make([]inspect.Endpoint, 0, len(b.byAddr))
	for _, addr := range slices.Sorted(maps.Keys(b.byAddr)) {
		ep := b.byAddr[addr]
		state := connectivity.Idle // no SubConn yet
		for i, sc := range ep.subConns {
			if s := connectivity.State(sc.Data.state.Load()); i == 0 {
				state = s
			} else {
				state = shard.BetterState(state, s)
			}
		}
		ejected := ep.shownEjected
		e := inspect.Endpoint{Addr: addr, Instance: ep.id, Zone: ep.zone, Weight: ep.weight, State: state.String(), Ejected: ejected, Stats: map[string]string{
			"ejected":              strconv.FormatBool(ejected),
			"consecutive_failures": strconv.FormatInt(ep.consec.Load(), 10),
			"ejections_in_a_row":   strconv.Itoa(ep.mult),
		}}
		if ep.picks != nil {
			e.Picks = ep.picks.Load()
		}
		out = append(out, e)
	}
	ib.Endpoints = out
}
