package p2c

import (
	"sync"
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

// orcaState is the policy's load-report state. loads is guarded by
// shard.Balancer's mutex (touched in SetConfig and Picker only); mu
// guards the rest, which the ticker reads.
type orcaState struct {
	loads map[uint64]*orcaweight.Endpoint // by shard.Endpoint.ID; nil while off

	mu      sync.Mutex
	tracker *orcaweight.Tracker
	ticker  *orcaweight.Ticker
	cur     *orcaPicker // the last picker built; nil if none
	closed  bool
}

// set turns load reports on (cfg not nil) or off.
func (o *orcaState) set(cfg *orcaweight.Config, clock orcaweight.Clock) {
	if cfg == nil {
		o.mu.Lock()
		t := o.ticker
		o.ticker, o.tracker, o.cur = nil, nil, nil
		o.mu.Unlock()
		if t != nil {
			t.Stop() // outside mu: a tick in progress takes it
		}
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	if o.tracker != nil {
		o.tracker.SetConfig(*cfg)
		return
	}
	o.tracker = orcaweight.NewTracker(*cfg, clock)
	if o.loads == nil {
		o.loads = map[uint64]*orcaweight.Endpoint{}
	}
	o.ticker = orcaweight.StartTicker(o.tracker.Period, o.tick)
}

// close stops the ticker and waits for it.
func (o *orcaState) close() {
	o.mu.Lock()
	o.closed = true
	t := o.ticker
	o.ticker, o.tracker, o.cur = nil, nil, nil
	o.mu.Unlock()
	if t != nil {
		t.Stop() // outside mu: a tick in progress takes it
	}
}

// tick rebuilds the current picker's candidate array from the reports.
func (o *orcaState) tick() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cur == nil || o.tracker == nil {
		return
	}
	ws, _ := o.tracker.Weights(o.cur.loads, o.cur.reg, true)
	o.cur.inner.Store(o.cur.build(ws))
}

// picker returns the policy's picker for u while load reports are on,
// or, once they were turned off (on false), drops their state and
// returns nil for Picker to build a plain picker.
func (o *orcaState) picker(u *shard.Update, par *params, on bool) gbalancer.Picker {
	if !on {
		o.loads = nil
		return plainPicker(u, par)
	}
	for _, e := range u.Removed {
		delete(o.loads, e.ID)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cur = nil
	if len(u.Ready) == 0 || o.tracker == nil {
		return nil
	}
	n := len(u.Ready)
	pk := &orcaPicker{par: par, eps: make([]endpoint, n), loads: make([]*orcaweight.Endpoint, n), reg: make([]uint32, n)}
	for i, e := range u.Ready {
		l := o.loads[e.ID]
		if l == nil {
			l = o.tracker.NewEndpoint()
			o.loads[e.ID] = l
		}
		pk.eps[i] = endpoint{picker: reportingPicker{Picker: e.Picker, load: l}, stats: e.Data.(*stats)}
		pk.loads[i], pk.reg[i] = l, e.Weight
	}
	ws, _ := o.tracker.Weights(pk.loads, pk.reg, false)
	pk.inner.Store(pk.build(ws))
	o.cur = pk
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
	eps   []endpoint             // the ready endpoints, once each
	loads []*orcaweight.Endpoint // their reports
	reg   []uint32               // their registry weights
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
