package zone

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/connectivity"

	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
)

// updateLocked sends gRPC a picker for the zones' current states.
func (b *balancer) updateLocked() {
	if b.inhibit || b.closed {
		return
	}
	b.dirty = false
	b.countPicks = b.parent == 0 && inspect.CountingPicks()
	lv := levels(b.zones, b.cfg.LocalZone, b.cfg.FailoverOrder)
	targets, weights := plan(lv, b.cfg.MinLocalShare)
	if len(targets) > 0 {
		p := &picker{pickers: make([]gbalancer.Picker, len(targets)), cum: make([]uint64, len(targets)), count: b.countPicks}
		sum := 0.0
		for _, w := range weights {
			sum += w
		}
		acc := 0.0
		for i, z := range targets {
			p.pickers[i] = z.state.Picker
			acc += weights[i]
			p.cum[i] = uint64(math.Min(acc/sum*(1<<63), 1<<63-1)) << 1
		}
		p.cum[len(p.cum)-1] = math.MaxUint64
		b.cc.UpdateState(gbalancer.State{ConnectivityState: connectivity.Ready, Picker: p})
		return
	}
	// No zone can take calls: wait while any connects, else fail with the
	// error of the zone that would be tried first.
	var first *zoneChild
	for _, level := range lv {
		for _, z := range level {
			switch z.state.ConnectivityState {
			case connectivity.Connecting, connectivity.Idle:
				b.cc.UpdateState(gbalancer.State{ConnectivityState: connectivity.Connecting, Picker: base.NewErrPicker(gbalancer.ErrNoSubConnAvailable)})
				return
			}
			if first == nil && z.state.Picker != nil {
				first = z
			}
		}
	}
	if first == nil {
		b.cc.UpdateState(gbalancer.State{ConnectivityState: connectivity.Connecting, Picker: base.NewErrPicker(gbalancer.ErrNoSubConnAvailable)})
		return
	}
	b.cc.UpdateState(gbalancer.State{ConnectivityState: first.state.ConnectivityState, Picker: &picker{pickers: []gbalancer.Picker{first.state.Picker}, cum: []uint64{math.MaxUint64}, count: b.countPicks}})
}

// levels returns the zones in the order they are tried: the local zone,
// the failover order, then every other zone together, by name.
func levels(zones map[string]*zoneChild, local string, order []string) [][]*zoneChild {
	var out [][]*zoneChild
	seen := map[string]bool{}
	add := func(name string) {
		if z := zones[name]; z != nil && !seen[name] {
			seen[name] = true
			out = append(out, []*zoneChild{z})
		}
	}
	if local != "" {
		add(local)
	}
	for _, name := range order {
		add(name)
	}
	var rest []*zoneChild
	for name, z := range zones {
		if !seen[name] {
			rest = append(rest, z)
		}
	}
	slices.SortFunc(rest, func(a, b *zoneChild) int { return strings.Compare(a.name, b.name) })
	if len(rest) > 0 {
		out = append(out, rest)
	}
	return out
}

// healthyCapacity returns the zone's healthy capacity, trusting its
// child's state where the two disagree: a child that is not READY takes
// no calls; one that is READY without a healthy SubConn that the
// balancer saw (a child without health listeners) is taken at full
// capacity.
func (z *zoneChild) healthyCapacity() uint64 {
	if z.state.ConnectivityState != connectivity.Ready || z.state.Picker == nil {
		return 0
	}
	if z.healthy == 0 {
		return z.total
	}
	return z.healthy
}

// plan returns the zones that take calls and their shares. Each level,
// in order, takes min(1, h/minLocalShare) of the calls the levels before
// it left, where h is the level's healthy fraction of its capacity;
// inside a level, zones share by healthy capacity. When every level is
// degraded, the shares sum to less than 1 and the picker scales them up.
func plan(levels [][]*zoneChild, minLocalShare float64) ([]*zoneChild, []float64) {
	var zs []*zoneChild
	var ws []float64
	left := 1.0
	for _, level := range levels {
		var total, healthy uint64
		for _, z := range level {
			total += z.total
			healthy += z.healthyCapacity()
		}
		if healthy == 0 || total == 0 || left <= 0 {
			continue
		}
		share := left * math.Min(1, float64(healthy)/float64(total)/minLocalShare)
		left -= share
		for _, z := range level {
			if h := z.healthyCapacity(); h > 0 {
				zs = append(zs, z)
				ws = append(ws, share*float64(h)/float64(healthy))
			}
		}
	}
	return zs, ws
}

// picker chooses a zone at random by share and delegates to its child.
type picker struct {
	pickers []gbalancer.Picker
	cum     []uint64 // cumulative shares scaled to 2^64; the last is MaxUint64
	count   bool     // count picks per endpoint
}

func (p *picker) Pick(info gbalancer.PickInfo) (gbalancer.PickResult, error) {
	i := 0
	if len(p.cum) > 1 {
		r := rand.Uint64()
		for r > p.cum[i] {
			i++
		}
	}
	res, err := p.pickers[i].Pick(info)
	if sc, ok := res.SubConn.(*subConn); ok {
		res.SubConn = sc.SubConn
		if p.count && err == nil && sc.Data.ep != nil {
			sc.Data.ep.picks.Add(1)
		}
	}
	return res, err
}
