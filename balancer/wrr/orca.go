package wrr

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"

	gbalancer "google.golang.org/grpc/balancer"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/orcaweight"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/wrrtable"
)

// orcaState is the policy's load-report state. loads is guarded by
// shard.Balancer's mutex (it is touched only in Picker and SetConfig);
// mu guards tracker, ticker and cur, which the ticker reads.
type orcaState struct {
	loads map[uint64]*orcaweight.Endpoint // by shard.Endpoint.ID

	mu      sync.Mutex
	tracker *orcaweight.Tracker // nil while off
	ticker  *orcaweight.Ticker
	cur     *orcaPicker // the last picker published; nil if none
	closed  bool
}

// setLoadReports turns load reports on (cfg not nil) or off.
func (p *policy) setLoadReports(cfg *orcaweight.Config) {
	o := &p.orca
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	if cfg == nil {
		if o.ticker != nil {
			t := o.ticker
			o.ticker, o.tracker, o.cur = nil, nil, nil
			o.mu.Unlock()
			t.Stop() // outside mu: a tick in progress takes it
			o.mu.Lock()
		}
		o.loads = nil
		return
	}
	if o.tracker != nil {
		o.tracker.SetConfig(*cfg)
		return
	}
	o.tracker = orcaweight.NewTracker(*cfg, p.clock)
	o.loads = map[uint64]*orcaweight.Endpoint{}
	tr := o.tracker
	o.ticker = orcaweight.StartTicker(tr.Period, p.tick)
}

// close stops the ticker; the policy stays off.
func (p *policy) close() {
	o := &p.orca
	o.mu.Lock()
	o.closed = true
	t := o.ticker
	o.ticker, o.tracker, o.cur = nil, nil, nil
	o.mu.Unlock()
	if t != nil {
		t.Stop()
	}
}

// tick recomputes the current picker's schedule from the reports.
func (p *policy) tick() {
	o := &p.orca
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cur == nil || o.tracker == nil {
		return
	}
	ws, _ := o.tracker.Weights(o.cur.loads, o.cur.reg, true)
	o.cur.table.Store(wrrtable.Build(ws))
}

// orcaPicker builds the picker while load reports are on: the registry
// weights blended with the last computed estimates, refreshed by tick.
func (p *policy) orcaPicker(u *shard.Update) gbalancer.Picker {
	o := &p.orca
	if p.cfg.LoadReports == nil { // turned off: drop the records
		o.loads = nil
		return p.Picker(u)
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
	pk := &orcaPicker{pickers: make([]gbalancer.Picker, len(u.Ready)), loads: make([]*orcaweight.Endpoint, len(u.Ready)), reg: make([]uint32, len(u.Ready))}
	for i, e := range u.Ready {
		l := o.loads[e.ID]
		if l == nil {
			l = o.tracker.NewEndpoint()
			o.loads[e.ID] = l
		}
		pk.pickers[i], pk.loads[i] = e.Picker, l
		pk.reg[i] = e.Weight
		if e.Unweighted {
			pk.reg[i] = uint32(p.cfg.DefaultWeight)
		}
	}
	ws, _ := o.tracker.Weights(pk.loads, pk.reg, false)
	pk.table.Store(wrrtable.Build(ws))
	pk.next.Store(rand.Uint64())
	o.cur = pk
	return pk
}

// orcaPicker is picker with a schedule the ticker replaces, and a Done
// that records each call's load report.
type orcaPicker struct {
	pickers []gbalancer.Picker
	loads   []*orcaweight.Endpoint
	reg     []uint32 // registry weights
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
