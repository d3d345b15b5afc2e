// Package fakecc is a fake grpc balancer.ClientConn for unit tests and
// picker benchmarks: it builds any registered policy, hands it endpoints,
// and drives the SubConns it creates to READY without a network, so that
// pickers are measured exactly as gRPC would build them.
//
// Like grpc's own ClientConn, the fake never calls a SubConn's state or
// health listener from inside a call into or out of the balancer (in
// particular not from NewSubConn): it queues the update, and the Harness
// delivers queued updates one at a time after the balancer call that
// caused them has returned, serialised with its other calls into the
// balancer. A policy may therefore hold its own mutex across NewSubConn,
// as grpc's weighted_round_robin does.
package fakecc

import (
	"fmt"
	"net/url"
	"sync"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
	estats "google.golang.org/grpc/experimental/stats"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
)

// ClientConn is a fake balancer.ClientConn. Its methods are safe for
// concurrent use.
type ClientConn struct {
	gbalancer.ClientConn // nil; satisfies the embedding requirement

	mu       sync.Mutex
	subConns []*SubConn
	state    gbalancer.State
	updates  int
	auto     bool     // queue each new SubConn's way to READY (UpdateReady)
	queue    []func() // listener calls not yet delivered, in order
}

// SubConn is a fake SubConn that only records what the balancer asks.
type SubConn struct {
	gbalancer.SubConn // nil; satisfies the embedding requirement

	Addr     string
	listener func(gbalancer.SubConnState)
	mu       sync.Mutex
	health   func(gbalancer.SubConnState)
	shutdown bool
	isReady  bool // READY delivered to listener since the last failure
	healthy  bool // SERVING delivered to the current health listener
}

// Connect implements balancer.SubConn; the test drives states itself.
func (s *SubConn) Connect() {}

// Shutdown implements balancer.SubConn.
func (s *SubConn) Shutdown() {
	s.mu.Lock()
	s.shutdown = true
	s.mu.Unlock()
}

// RegisterHealthListener implements balancer.SubConn.
func (s *SubConn) RegisterHealthListener(l func(gbalancer.SubConnState)) {
	s.mu.Lock()
	s.health = l
	s.healthy = false
	s.mu.Unlock()
}

// NewSubConn implements balancer.ClientConn. It calls no listener.
func (c *ClientConn) NewSubConn(addrs []gresolver.Address, opts gbalancer.NewSubConnOptions) (gbalancer.SubConn, error) {
	sc := &SubConn{Addr: addrs[0].Addr, listener: opts.StateListener}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.subConns = append(c.subConns, sc)
	if c.auto {
		c.queue = append(c.queue, sc.ready)
	}
	return sc, nil
}

// schedule queues f for delivery after the current balancer call.
func (c *ClientConn) schedule(f func()) {
	c.mu.Lock()
	c.queue = append(c.queue, f)
	c.mu.Unlock()
}

// next pops the oldest queued delivery, or returns nil.
func (c *ClientConn) next() func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		return nil
	}
	f := c.queue[0]
	c.queue = c.queue[1:]
	return f
}

// UpdateState implements balancer.ClientConn.
func (c *ClientConn) UpdateState(s gbalancer.State) {
	c.mu.Lock()
	c.state = s
	c.updates++
	c.mu.Unlock()
}

// ResolveNow implements balancer.ClientConn.
func (c *ClientConn) ResolveNow(gresolver.ResolveNowOptions) {}

// Target implements balancer.ClientConn.
func (c *ClientConn) Target() string { return target.String() }

// target is the fake ClientConn's target, given to the balancers it
// builds in their BuildOptions.
var target = gresolver.Target{URL: url.URL{Scheme: "fake", Path: "/test"}}

// MetricsRecorder implements balancer.ClientConn.
func (c *ClientConn) MetricsRecorder() estats.MetricsRecorder { return noMetrics{} }

type noMetrics struct {
	estats.UnimplementedMetricsRecorder
}

func (noMetrics) RecordInt64Count(*estats.Int64CountHandle, int64, ...string)             {}
func (noMetrics) RecordFloat64Count(*estats.Float64CountHandle, float64, ...string)       {}
func (noMetrics) RecordInt64Histo(*estats.Int64HistoHandle, int64, ...string)             {}
func (noMetrics) RecordFloat64Histo(*estats.Float64HistoHandle, float64, ...string)       {}
func (noMetrics) RecordInt64Gauge(*estats.Int64GaugeHandle, int64, ...string)             {}
func (noMetrics) RecordInt64UpDownCount(*estats.Int64UpDownCountHandle, int64, ...string) {}
func (noMetrics) RegisterAsyncReporter(estats.AsyncMetricReporter, ...estats.AsyncMetric) func() {
	return func() {}
}

// Picker returns the last picker and state the balancer reported.
func (c *ClientConn) Picker() (gbalancer.Picker, connectivity.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state.Picker, c.state.ConnectivityState
}

// SubConns returns the SubConns created so far, including shut down ones.
func (c *ClientConn) SubConns() []*SubConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*SubConn(nil), c.subConns...)
}

// Harness builds a policy on a fake ClientConn. Its methods are the
// fake's serialiser: each makes its calls into the balancer, then
// delivers the listener calls they queued, and returns when none is
// left; they hold serial throughout, so they may be called concurrently.
type Harness struct {
	CC *ClientConn
	B  gbalancer.Balancer
	// cfg is the parsed config sent with every update.
	cfg serviceconfig.LoadBalancingConfig

	serial sync.Mutex
}

// run calls f, then every listener call queued until the queue is empty,
// one at a time, as grpc's serialiser would.
func (h *Harness) run(f func()) {
	h.serial.Lock()
	defer h.serial.Unlock()
	f()
	for d := h.CC.next(); d != nil; d = h.CC.next() {
		d()
	}
}

// Build builds the registered policy name with the JSON config js ("" for
// defaults).
func Build(name, js string) (*Harness, error) {
	bb := gbalancer.Get(name)
	if bb == nil {
		return nil, fmt.Errorf("fakecc: policy %q is not registered", name)
	}
	h := &Harness{CC: &ClientConn{}}
	if p, ok := bb.(gbalancer.ConfigParser); ok {
		if js == "" {
			js = "{}"
		}
		cfg, err := p.ParseConfig([]byte(js))
		if err != nil {
			return nil, err
		}
		h.cfg = cfg
	}
	h.run(func() { h.B = bb.Build(h.CC, gbalancer.BuildOptions{Target: target}) })
	return h, nil
}

// BuildWith builds a balancer with build, for tests that construct a
// policy with fakes (a clock, say) the registered builder cannot take.
func BuildWith(build func(gbalancer.ClientConn) gbalancer.Balancer, cfg serviceconfig.LoadBalancingConfig) *Harness {
	h := &Harness{CC: &ClientConn{}, cfg: cfg}
	h.run(func() { h.B = build(h.CC) })
	return h
}

// Update sends endpoints to the balancer.
func (h *Harness) Update(eps []gresolver.Endpoint) error {
	var err error
	h.run(func() { err = h.update(eps) })
	return err
}

func (h *Harness) update(eps []gresolver.Endpoint) error {
	return h.B.UpdateClientConnState(gbalancer.ClientConnState{
		ResolverState:  gresolver.State{Endpoints: eps},
		BalancerConfig: h.cfg,
	})
}

// UpdateReady sends endpoints and drives every new SubConn to READY, for
// benchmarks. Each READY is its own update, as over a network, so the
// balancer builds one picker per endpoint: O(n²) for n endpoints.
func (h *Harness) UpdateReady(eps []gresolver.Endpoint) error {
	var err error
	h.run(func() {
		h.CC.mu.Lock()
		h.CC.auto = true
		h.CC.mu.Unlock()
		err = h.update(eps)
		h.CC.mu.Lock()
		h.CC.auto = false
		h.CC.mu.Unlock()
	})
	return err
}

// ready is one delivery: CONNECTING, READY, then SERVING to the health
// listener the READY made the balancer register, if it did.
func (sc *SubConn) ready() {
	sc.listener(gbalancer.SubConnState{ConnectivityState: connectivity.Connecting})
	sc.listener(gbalancer.SubConnState{ConnectivityState: connectivity.Ready})
	sc.mu.Lock()
	sc.isReady = true
	sc.mu.Unlock()
	sc.serving()
}

// serving sends SERVING to the health listener, if one is registered
// and has not had it. A policy that passes READY on from a goroutine of
// its own (outlier_detection_experimental) registers the listener after
// ready has returned; ReadyAll then delivers it.
func (sc *SubConn) serving() {
	sc.mu.Lock()
	health := sc.health
	if sc.healthy {
		health = nil
	}
	sc.healthy = health != nil
	sc.mu.Unlock()
	if health != nil {
		health(gbalancer.SubConnState{ConnectivityState: connectivity.Ready})
	}
}

// ReadyAll drives every SubConn that is not yet ready or shut down to
// READY, with a SERVING health update, as gRPC would after connecting,
// and SERVING to a health listener registered after READY that has not
// had it.
func (h *Harness) ReadyAll() {
	h.run(func() {
		for _, sc := range h.CC.SubConns() {
			sc.mu.Lock()
			var f func()
			switch {
			case sc.shutdown:
			case !sc.isReady:
				f = sc.ready
			case sc.health != nil && !sc.healthy:
				f = sc.serving
			}
			sc.mu.Unlock()
			if f != nil {
				h.CC.schedule(f)
			}
		}
	})
}

// Fail drives the SubConn for addr to TRANSIENT_FAILURE, as after a
// connection loss and failed reconnect.
func (h *Harness) Fail(addr string) {
	h.run(func() {
		for _, sc := range h.CC.SubConns() {
			if sc.Addr != addr {
				continue
			}
			sc.mu.Lock()
			live := !sc.shutdown
			sc.health = nil
			sc.isReady, sc.healthy = false, false
			sc.mu.Unlock()
			if live {
				h.CC.schedule(func() {
					sc.listener(gbalancer.SubConnState{ConnectivityState: connectivity.Idle})
					sc.listener(gbalancer.SubConnState{ConnectivityState: connectivity.Connecting})
					sc.listener(gbalancer.SubConnState{ConnectivityState: connectivity.TransientFailure})
				})
			}
		}
	})
}

// Close closes the balancer.
func (h *Harness) Close() { h.run(h.B.Close) }
