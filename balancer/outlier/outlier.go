package outlier

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	gbalancer "google.golang.org/grpc/balancer"
	_ "google.golang.org/grpc/balancer/roundrobin" // the default child
	gresolver "google.golang.org/grpc/resolver"

	"github.com/wayfinder-rpc/wayfinder/balancer/inspect"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/failure"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/lbconfig"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/shard"
	"github.com/wayfinder-rpc/wayfinder/balancer/internal/subconn"
)

func init() {
	gbalancer.Register(lbconfig.Builder[*Config]{Policy: Name, Parse: ParseConfig, New: newBalancer})
}

func newBalancer(cc gbalancer.ClientConn, opts gbalancer.BuildOptions, cfg *Config) gbalancer.Balancer {
	ctx, cancel := context.WithCancel(context.Background())
	b := &balancer{
		cc:     cc,
		opts:   opts,
		cfg:    cfg,
		byAddr: map[string]*endpoint{},
		kick:   make(chan struct{}, 1),
		cancel: cancel,
		parent: shard.ParentID(cc),
	}
	b.childCC = newChildCC(b)
	b.threshold.Store(int64(cfg.ConsecutiveFailures))
	b.wg.Go(func() { b.run(ctx) })
	b.id, b.unregister = inspect.Register(opts.Target.String(), "outlier", b.parent, b.describe)
	return b
}

// balancer wraps the child policy. It sees every SubConn the child makes
// (the child runs on the subconn frame, which wraps them), counts call
// results through the picker's Done callback, and ejects an endpoint by
// reporting its SubConns' health as TRANSIENT_FAILURE to the child, as
// grpc's xDS outlier detection does: the connection stays up, so an
// endpoint returns without reconnecting.
//
// # Locking
//
// childMu serialises every call into the child: gRPC's calls into the
// balancer and the listeners it calls (it serialises those itself, and
// calls no listener from inside one of them), and the ejection
// goroutine's. mu guards the balancer's own state. Lock order: childMu
// -> mu (the child calls NewSubConn and UpdateState, which take mu,
// inside childMu, and never anything that takes childMu). mu is never
// held while calling into the child.
type balancer struct {
	cc      gbalancer.ClientConn
	opts    gbalancer.BuildOptions
	childCC *childCC

	childMu  sync.Mutex
	child    gbalancer.Balancer // guarded by childMu
	childGen int                // guarded by childMu; bumped when the child policy changes
	closed   bool               // guarded by childMu

	mu         sync.Mutex
	cfg        *Config
	byAddr     map[string]*endpoint // every address of every endpoint
	eps        []*endpoint          // distinct endpoints, resolver order
	childState gbalancer.State
	inhibit    bool // inside UpdateClientConnState: one picker update at its end
	stopped    bool // Close was called: no more picker updates
	nextRate   time.Time

	id         uint64             // in package inspect
	parent     uint64             // inspect ID of the Wayfinder policy above, if any: do not count picks
	countPicks bool               // guarded by mu; the last picker counts picks
	picks      shard.PickCounters // guarded by mu; by each endpoint's first address
	ejections  uint64             // guarded by mu

	threshold atomic.Int64  // consecutive failures that eject; 0: off
	counting  atomic.Bool   // failure-rate detection is on: count every call
	kick      chan struct{} // 1-slot: evaluate now
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	unregister func() // removes the balancer from package inspect
}

// endpoint is one resolver endpoint's record, kept across updates while
// its first address stays in the resolver state.
type endpoint struct {
	consec atomic.Int64 // failures in a row
	succ   atomic.Int64 // calls not failed, this interval
	fail   atomic.Int64 // failed calls, this interval
	done   func(gbalancer.DoneInfo)
	picks  *atomic.Uint64 // set when the endpoint is made, if counting

	// Guarded by balancer.mu.
	id, zone  string // the registry instance's, for package inspect
	weight    uint32
	ejectedAt time.Time // zero if not ejected
	// shownEjected is what package inspect shows: whether the child was
	// told of the last verdict, ejection or return. It follows ejectedAt
	// once the child's picker does, so that an endpoint shown ejected
	// gets no new call.
	shownEjected bool
	mult         int // ejections in a row; the next lasts mult+1 bases
	subConns     []*subConn
}

func (b *balancer) UpdateClientConnState(s gbalancer.ClientConnState) error {
	cfg, ok := s.BalancerConfig.(*Config)
	if !ok {
		cfg, _ = ParseConfig(nil)
	}
	b.mu.Lock()
	old := b.cfg
	b.cfg = cfg
	b.threshold.Store(int64(cfg.ConsecutiveFailures))
	b.counting.Store(cfg.FailureRateThreshold > 0)
	if old == nil || old.Interval != cfg.Interval || b.nextRate.IsZero() {
		b.nextRate = time.Now().Add(time.Duration(cfg.Interval))
	}
	b.byAddr, b.eps = subconn.Index(s.ResolverState.Endpoints, b.byAddr, func(addr string) *endpoint {
		ep := &endpoint{picks: b.picks.Counter(addr)}
		ep.done = func(di gbalancer.DoneInfo) {
			// The common path inline: a success without failure-rate
			// detection reads shared memory and calls nothing.
			if di.Err == nil && !b.counting.Load() {
				if ep.consec.Load() != 0 {
					ep.consec.Store(0)
				}
				return
			}
			b.record(ep, di.Err)
		}
		return ep
	}, func(ep *endpoint, rep gresolver.Endpoint) {
		se := shard.FromChild(rep, gbalancer.State{})
		ep.id, ep.zone, ep.weight = se.Instance.ID, se.Instance.Zone, se.Weight
	})
	byAddr := b.byAddr
	b.picks.Retain(func(addr string) bool { return byAddr[addr] != nil })
	b.inhibit = true
	b.mu.Unlock()

	b.childMu.Lock()
	if b.child == nil || cfg.Child.Name() != old.Child.Name() {
		if b.child != nil {
			b.child.Close()
		}
		b.childGen++
		b.child = cfg.Child.Builder.Build(b.childCC, b.opts)
	}
	err := b.child.UpdateClientConnState(gbalancer.ClientConnState{
		ResolverState:  s.ResolverState,
		BalancerConfig: cfg.Child.Config,
	})
	b.childMu.Unlock()

	b.mu.Lock()
	b.inhibit = false
	b.sendPickerLocked()
	b.mu.Unlock()
	b.poke()
	return err
}

func (b *balancer) ResolverError(err error) {
	b.childMu.Lock()
	defer b.childMu.Unlock()
	if b.child != nil {
		b.child.ResolverError(err)
	}
}

// UpdateSubConnState is never called: SubConns have state listeners.
func (b *balancer) UpdateSubConnState(gbalancer.SubConn, gbalancer.SubConnState) {}

func (b *balancer) ExitIdle() {
	b.childMu.Lock()
	defer b.childMu.Unlock()
	if b.child != nil {
		b.child.ExitIdle()
	}
}

func (b *balancer) Close() {
	b.unregister()
	b.cancel()
	b.wg.Wait()
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
	b.childMu.Lock()
	defer b.childMu.Unlock()
	b.closed = true
	if b.child != nil {
		b.child.Close()
	}
}

func (b *balancer) sendPickerLocked() {
	if b.inhibit || b.stopped || b.childState.Picker == nil {
		return
	}
	b.countPicks = b.parent == 0 && inspect.CountingPicks()
	b.cc.UpdateState(gbalancer.State{
		ConnectivityState: b.childState.ConnectivityState,
		Picker:            &picker{child: b.childState.Picker, count: b.countPicks},
	})
}

// picker delegates to the child's and counts each call's result against
// the endpoint of the SubConn it went to, and the pick if count is set.
type picker struct {
	child gbalancer.Picker
	count bool
}

func (p *picker) Pick(info gbalancer.PickInfo) (gbalancer.PickResult, error) {
	r, err := p.child.Pick(info)
	if err != nil {
		return r, err
	}
	sc, ok := r.SubConn.(*subConn)
	if !ok {
		return r, nil
	}
	r.SubConn = sc.SubConn
	ep := sc.Data.ep
	if ep == nil {
		return r, nil
	}
	if p.count {
		ep.picks.Add(1)
	}
	if childDone := r.Done; childDone != nil {
		r.Done = func(di gbalancer.DoneInfo) {
			ep.done(di)
			childDone(di)
		}
	} else {
		r.Done = ep.done // no allocation when the child sets no Done
	}
	return r, nil
}

// record counts one call's result and wakes the ejection goroutine when
// the consecutive-failure threshold is reached.
func (b *balancer) record(ep *endpoint, err error) {
	counting := b.counting.Load()
	if !IsFailure(err) {
		if counting {
			ep.succ.Add(1)
		}
		if ep.consec.Load() != 0 {
			ep.consec.Store(0)
		}
		return
	}
	if counting {
		ep.fail.Add(1)
	}
	n := ep.consec.Add(1)
	if t := b.threshold.Load(); t > 0 && n >= t {
		b.poke()
	}
}

func (b *balancer) poke() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// IsFailure reports whether a call's error counts against the endpoint:
// UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN and DATA_LOSS (the
// codes gRPC maps from HTTP 5xx, what a broken transport gives, and what
// a host that hangs gives). Other codes, RESOURCE_EXHAUSTED included,
// are the application's answers and count as successes; the package doc
// says why P2C differs.
func IsFailure(err error) bool { return failure.Ejects(err) }
