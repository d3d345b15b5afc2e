package wrr

import (
	"math/rand/v2"
	"sync/atomic"

	gbalancer "google.golang.org/grpc/balancer"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/orcaweight"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/wrrtable"
)

// orcaPicker builds the picker while load reports are on: the registry
// weights blended with the last computed estimates, refreshed by the
// ticker orcaweight.State owns.
func (p *policy) orcaPicker(u *shard.Update) gbalancer.Picker {
	o := &p.orca
	if p.cfg.LoadReports == nil { // turned off: drop the records
		o.Off()
		return p.Picker(u)
	}
	for _, e := range u.Removed {
		o.Forget(e.ID)
	}
	ids, reg := make([]uint64, len(u.Ready)), make([]uint32, len(u.Ready))
	for i, e := range u.Ready {
		ids[i], reg[i] = e.ID, e.Weight
		if e.Unweighted {
			reg[i] = uint32(p.cfg.DefaultWeight)
		}
	}
	pk, ok := orcaweight.Build(o, ids, reg, func(loads []*orcaweight.Endpoint, ws []uint32) (*orcaPicker, func([]uint32)) {
		pk := &orcaPicker{pickers: make([]gbalancer.Picker, len(ids)), loads: loads}
		for i, e := range u.Ready {
			pk.pickers[i] = e.Picker
		}
		pk.table.Store(wrrtable.Build(ws))
		pk.next.Store(rand.Uint64())
		return pk, func(ws []uint32) { pk.table.Store(wrrtable.Build(ws)) }
	})
	if !ok {
		return nil
	}
	return pk
}

// orcaPicker is picker with a schedule the ticker replaces, and a Done
// that records each call's load report.
type orcaPicker struct {
	pickers []gbalancer.Picker
	loads   []*orcaweight.Endpoint
	table   atomic.Pointer[wrrtable.Table]
	_       [64]byte
	next    atomic.Uint64
}

func (p *orcaPicker) Pick(info gbalancer.PickInfo) (gbalancer.PickResult, error) {
	i := p.table.Load().At(p.next.Add(1))
	res, err := p.pickers[i].Pick(info)
	if err == nil {
		res.Done = p.loads[i].Done(res.Done)
	}
	return res, err
}
