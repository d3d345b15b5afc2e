package p2c

import (
	"sync/atomic"

	gbalancer "google.golang.org/grpc/balancer"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/orcaweight"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
)

// With load reports on, the picker is a plain P2C picker whose endpoint
// array holds each ready endpoint a number of times in proportion to its
// blended weight (orcaweight): the two random candidates are then drawn
// in proportion to their weights, and the less loaded one wins as
// before. The pick path of P2C is unchanged; orcaPicker adds one atomic
// load to reach the array the ticker last built, and each endpoint's
// child picker is wrapped to record its calls' reports.

// slotsPerEndpoint sizes the candidate array: about this many slots per
// endpoint on average (at least minSlots in all), so that weights are
// kept to about 1/slotsPerEndpoint of the mean.
const (
	slotsPerEndpoint = 8
	minSlots         = 256
)

// picker returns the policy's picker for u while load reports are on,
// or, once they were turned off (on false), drops their state and
// returns a plain picker.
func (p *policy) orcaPicker(u *shard.Update, par *params, on bool) gbalancer.Picker {
	o := &p.orca
	if !on {
		o.Off()
		return plainPicker(u, par)
	}
	for _, e := range u.Removed {
		o.Forget(e.ID)
	}
	ids, reg := make([]uint64, len(u.Ready)), make([]uint32, len(u.Ready))
	for i, e := range u.Ready {
		ids[i], reg[i] = e.ID, e.Weight
	}
	pk, ok := orcaweight.Build(o, ids, reg, func(loads []*orcaweight.Endpoint, ws []uint32) (*orcaPicker, func([]uint32)) {
		pk := &orcaPicker{par: par, eps: make([]endpoint, len(ids))}
		for i, e := range u.Ready {
			pk.eps[i] = endpoint{picker: reportingPicker{Picker: e.Picker, load: loads[i]}, stats: e.Data.(*stats)}
		}
		pk.inner.Store(pk.build(ws))
		return pk, func(ws []uint32) { pk.inner.Store(pk.build(ws)) }
	})
	if !ok {
		return nil
	}
	return pk
}

// plainPicker is Picker's picker without load reports.
func plainPicker(u *shard.Update, par *params) gbalancer.Picker {
	if len(u.Ready) == 0 {
		return nil
	}
	pk := &picker{eps: make([]endpoint, len(u.Ready)), params: par}
	for i, e := range u.Ready {
		pk.eps[i] = endpoint{picker: e.Picker, stats: e.Data.(*stats)}
	}
	return pk
}

// orcaPicker picks with the P2C picker the ticker last built.
type orcaPicker struct {
	inner atomic.Pointer[picker]
	par   *params
	eps   []endpoint // the ready endpoints, once each
}

func (p *orcaPicker) Pick(info gbalancer.PickInfo) (gbalancer.PickResult, error) {
	return p.inner.Load().Pick(info)
}

// build returns a P2C picker whose candidates are eps, each repeated in
// proportion to its weight in ws.
func (p *orcaPicker) build(ws []uint32) *picker {
	var sum uint64
	for _, w := range ws {
		sum += uint64(w)
	}
	total := uint64(max(minSlots, slotsPerEndpoint*len(ws)))
	out := make([]endpoint, 0, total+uint64(len(ws)))
	for i, w := range ws {
		k := max(1, (uint64(w)*total+sum/2)/sum)
		for range k {
			out = append(out, p.eps[i])
		}
	}
	return &picker{eps: out, params: p.par}
}

// reportingPicker records each call's load report on load.
type reportingPicker struct {
	gbalancer.Picker
	load *orcaweight.Endpoint
}

func (p reportingPicker) Pick(info gbalancer.PickInfo) (gbalancer.PickResult, error) {
	res, err := p.Picker.Pick(info)
	if err == nil {
		res.Done = p.load.Done(res.Done)
	}
	return res, err
}
