package orcaweight

import "sync"

// State is a policy's load-report state, the part every policy that
// blends reports shares: a record per endpoint kept across pickers, the
// tracker, and the ticker that recomputes the current picker's weights
// off the pick path.
//
// Forget, Off, On and Build are called under the policy's own mutex
// (shard.Balancer's), which guards the records; State's mutex guards
// the rest, which the ticker reads.
type State struct {
	loads map[uint64]*Endpoint // by endpoint ID; nil while off

	mu      sync.Mutex
	tracker *Tracker
	ticker  *Ticker
	cur     *current // the last picker built; nil if none
	closed  bool
}

// current is what a tick needs of the last picker built.
type current struct {
	loads   []*Endpoint
	reg     []uint32
	refresh func(ws []uint32)
}

// Set turns load reports on (cfg not nil) or off.
func (s *State) Set(cfg *Config, clock Clock) {
	if cfg == nil {
		s.stop(false)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.tracker != nil {
		s.tracker.SetConfig(*cfg)
		return
	}
	s.tracker = NewTracker(*cfg, clock)
	if s.loads == nil {
		s.loads = map[uint64]*Endpoint{}
	}
	s.ticker = StartTicker(s.tracker.Period, s.tick)
}

// Close stops the ticker and waits for a tick in progress; the state
// stays off.
func (s *State) Close() { s.stop(true) }

func (s *State) stop(closing bool) {
	s.mu.Lock()
	if closing {
		s.closed = true
	}
	t := s.ticker
	s.ticker, s.tracker, s.cur = nil, nil, nil
	s.mu.Unlock()
	if t != nil {
		t.Stop() // outside mu: a tick in progress takes it
	}
}

// On reports whether records are kept: reports were on for the last
// picker, so the next one must go through Build or Off.
func (s *State) On() bool { return s.loads != nil }

// Off drops the records, once reports were turned off.
func (s *State) Off() { s.loads = nil }

// Forget drops the record of an endpoint that left.
func (s *State) Forget(id uint64) { delete(s.loads, id) }

// Build builds the picker for the ready endpoints ids, of registry
// weights reg: mk gets each one's record and the weights to start from,
// and returns the picker and how to give it new weights, which the
// ticker then calls. ok is false when there is nothing to build (no
// endpoint, or reports turned off meanwhile).
func Build[P any](s *State, ids []uint64, reg []uint32, mk func(loads []*Endpoint, ws []uint32) (P, func(ws []uint32))) (pk P, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = nil
	if len(ids) == 0 || s.tracker == nil {
		return pk, false
	}
	loads := make([]*Endpoint, len(ids))
	for i, id := range ids {
		l := s.loads[id]
		if l == nil {
			l = s.tracker.NewEndpoint()
			s.loads[id] = l
		}
		loads[i] = l
	}
	ws, _ := s.tracker.Weights(loads, reg, false)
	pk, refresh := mk(loads, ws)
	s.cur = &current{loads: loads, reg: reg, refresh: refresh}
	return pk, true
}

// tick recomputes the current picker's weights from the reports.
func (s *State) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || s.tracker == nil {
		return
	}
	ws, _ := s.tracker.Weights(s.cur.loads, s.cur.reg, true)
	s.cur.refresh(ws)
}
