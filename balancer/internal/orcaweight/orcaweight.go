package orcaweight

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	gbalancer "google.golang.org/grpc/balancer"
	_ "google.golang.org/grpc/orca" // decodes trailers' reports into DoneInfo.ServerLoad

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/lbconfig"
)

// Defaults, as gRFC A58's.
const (
	DefaultBlackoutPeriod          = 10 * time.Second
	DefaultWeightExpirationPeriod  = 3 * time.Minute
	DefaultWeightUpdatePeriod      = time.Second
	DefaultErrorUtilizationPenalty = 1.0
	// MinWeightUpdatePeriod bounds how often weights are recomputed.
	MinWeightUpdatePeriod = 100 * time.Millisecond
)

// Config is a policy's "loadReports" config object. Its presence turns
// load reports on; {} takes every default.
type Config struct {
	// BlackoutPeriod is how long an endpoint must report before its
	// reports weigh. Default 10s; range 0..1h.
	BlackoutPeriod *lbconfig.Duration `json:"blackoutPeriod,omitempty"`
	// WeightExpirationPeriod: an endpoint whose last report is this old
	// falls back to the mean. Default 3m; range 1s..24h.
	WeightExpirationPeriod lbconfig.Duration `json:"weightExpirationPeriod,omitempty"`
	// WeightUpdatePeriod is how often weights are recomputed. Default 1s;
	// range 100ms..1h.
	WeightUpdatePeriod lbconfig.Duration `json:"weightUpdatePeriod,omitempty"`
	// ErrorUtilizationPenalty multiplies the error rate eps/qps added to
	// the utilisation. Default 1; range 0..100.
	ErrorUtilizationPenalty *float64 `json:"errorUtilizationPenalty,omitempty"`
	// Metric, if set, names the utilisation to weigh by
	// (OrcaLoadReport.utilization[Metric], gRFC A114's custom metrics)
	// instead of application_utilization or cpu_utilization.
	Metric string `json:"metric,omitempty"`
}

// UnmarshalJSON implements json.Unmarshaler: unknown fields are errors.
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var p plain
	if err := d.Decode(&p); err != nil {
		return fmt.Errorf("loadReports: %v", err)
	}
	*c = Config(p)
	return nil
}

// Validate applies the defaults and checks the ranges; errors name
// policy and the field.
func (c *Config) Validate(policy string) error {
	if c.BlackoutPeriod == nil {
		d := lbconfig.Duration(DefaultBlackoutPeriod)
		c.BlackoutPeriod = &d
	}
	if c.WeightExpirationPeriod == 0 {
		c.WeightExpirationPeriod = lbconfig.Duration(DefaultWeightExpirationPeriod)
	}
	if c.WeightUpdatePeriod == 0 {
		c.WeightUpdatePeriod = lbconfig.Duration(DefaultWeightUpdatePeriod)
	}
	if c.ErrorUtilizationPenalty == nil {
		p := DefaultErrorUtilizationPenalty
		c.ErrorUtilizationPenalty = &p
	}
	if d := time.Duration(*c.BlackoutPeriod); d < 0 || d > time.Hour {
		return lbconfig.Invalid(policy, "loadReports.blackoutPeriod", "%v is out of range 0..1h", d)
	}
	if d := time.Duration(c.WeightExpirationPeriod); d < time.Second || d > 24*time.Hour {
		return lbconfig.Invalid(policy, "loadReports.weightExpirationPeriod", "%v is out of range 1s..24h", d)
	}
	if d := time.Duration(c.WeightUpdatePeriod); d < MinWeightUpdatePeriod || d > time.Hour {
		return lbconfig.Invalid(policy, "loadReports.weightUpdatePeriod", "%v is out of range 100ms..1h", d)
	}
	if p := *c.ErrorUtilizationPenalty; !(p >= 0 && p <= 100) {
		return lbconfig.Invalid(policy, "loadReports.errorUtilizationPenalty", "%v is out of range 0..100", p)
	}
	return nil
}

// Clock is the time source, in nanoseconds; tests substitute a fake.
type Clock func() int64

var epoch = time.Now()

// SystemClock reads the monotonic clock.
func SystemClock() int64 { return int64(time.Since(epoch)) }

// Endpoint is one endpoint's load as reported. Report and Done are safe
// for concurrent use and read no clock: the Tracker notes when reports
// arrive at its updates. The rest belongs to the Tracker.
type Endpoint struct {
	util, rps, eps atomic.Uint64           // float64 bits of the latest usable report
	reports        atomic.Uint64           // usable reports received
	calls          atomic.Uint64           // calls finished
	metric         *atomic.Pointer[string] // the Tracker's: Config.Metric

	// done records a finished call's report (DoneInfo.ServerLoad).
	done func(gbalancer.DoneInfo)

	// The Tracker's, under its mutex.
	prevCalls, prevReports uint64
	prevAt                 int64
	last                   int64   // the update that first saw the latest report; 0: none
	since                  int64   // the update that first saw the current run of reports; 0: none
	c                      float64 // the last capacity computed; 0: none
}

// Done returns a Done that records a call's report, then calls child if
// it is not nil. Without child it allocates nothing.
func (e *Endpoint) Done(child func(gbalancer.DoneInfo)) func(gbalancer.DoneInfo) {
	if child == nil {
		return e.done
	}
	return func(di gbalancer.DoneInfo) {
		e.done(di)
		child(di)
	}
}

func (e *Endpoint) record(di gbalancer.DoneInfo) {
	e.calls.Add(1)
	if r, ok := di.ServerLoad.(*v3orcapb.OrcaLoadReport); ok {
		e.Report(r)
	}
}

// OnLoadReport implements orca.OOBListener.
func (e *Endpoint) OnLoadReport(r *v3orcapb.OrcaLoadReport) { e.Report(r) }

// Report records r; a report without utilisation is ignored.
func (e *Endpoint) Report(r *v3orcapb.OrcaLoadReport) {
	var u float64
	if m := *e.metric.Load(); m != "" {
		u = r.GetUtilization()[m]
	} else if u = r.GetApplicationUtilization(); u <= 0 {
		u = r.GetCpuUtilization()
	}
	if !(u > 0) || math.IsInf(u, 0) {
		return
	}
	e.util.Store(math.Float64bits(u))
	e.rps.Store(math.Float64bits(r.GetRpsFractional()))
	e.eps.Store(math.Float64bits(r.GetEps()))
	e.reports.Add(1)
}

// Tracker computes the weights of a set of endpoints.
type Tracker struct {
	clock  Clock
	metric atomic.Pointer[string] // cfg.Metric, for Endpoint.Report
	mu     sync.Mutex             // guards cfg and the endpoints' Tracker fields
	cfg    Config
}

// NewTracker returns a tracker with cfg (validated) and clock.
func NewTracker(cfg Config, clock Clock) *Tracker {
	t := &Tracker{cfg: cfg, clock: clock}
	t.metric.Store(&cfg.Metric)
	return t
}

// SetConfig replaces the config (validated); it applies to the next
// reports and weights of every endpoint.
func (t *Tracker) SetConfig(cfg Config) {
	t.mu.Lock()
	t.cfg = cfg
	t.metric.Store(&cfg.Metric)
	t.mu.Unlock()
}

// Period returns how often Weights should be called.
func (t *Tracker) Period() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return time.Duration(t.cfg.WeightUpdatePeriod)
}

// NewEndpoint returns a new endpoint's record.
func (t *Tracker) NewEndpoint() *Endpoint {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := &Endpoint{metric: &t.metric, prevAt: t.clock()}
	e.done = e.record
	return e
}

// capacity returns e's capacity estimate c (0 if unusable), updated
// from its latest report and call rate if refresh (once per update
// period: the times of reports are those of the updates that first see
// them, at most one period late). Called with t.mu held.
func (t *Tracker) capacity(e *Endpoint, now int64, refresh bool) float64 {
	if !refresh {
		if e.since == 0 || now-e.since < int64(*t.cfg.BlackoutPeriod) || now-e.last >= int64(t.cfg.WeightExpirationPeriod) {
			return 0
		}
		return e.c
	}
	calls, reports := e.calls.Load(), e.reports.Load()
	var clientQPS float64
	if dt := now - e.prevAt; dt > 0 {
		clientQPS = float64(calls-e.prevCalls) / (float64(dt) / 1e9)
	}
	fresh := reports != e.prevReports
	e.prevCalls, e.prevReports, e.prevAt = calls, reports, now
	if fresh {
		e.last = now
		if e.since == 0 {
			e.since = now
		}
	}
	if e.last == 0 {
		return 0
	}
	if now-e.last >= int64(t.cfg.WeightExpirationPeriod) {
		e.since, e.c = 0, 0 // the blackout applies again to new reports
		return 0
	}
	if fresh {
		u := math.Float64frombits(e.util.Load())
		qps := math.Float64frombits(e.rps.Load())
		if qps <= 0 {
			qps = clientQPS
		}
		if qps > 0 {
			eps := math.Float64frombits(e.eps.Load())
			e.c = qps / (u + *t.cfg.ErrorUtilizationPenalty*eps/qps)
		}
	}
	if now-e.since < int64(*t.cfg.BlackoutPeriod) {
		return 0
	}
	return e.c
}

// Weights returns the blended weights of eps, whose registry weights are
// reg, scaled to integers for a schedule (the largest 10,000, none below
// 1), and whether any report weighed in. Without one, it returns reg.
// With refresh, each endpoint's estimate is first updated from its latest
// report and call rate since the last refresh: call it so once per
// Period; without, the last estimates are used (for a new picker).
func (t *Tracker) Weights(eps []*Endpoint, reg []uint32, refresh bool) ([]uint32, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock()
	cs := make([]float64, len(eps))
	var sum float64
	n := 0
	for i, e := range eps {
		if c := t.capacity(e, now, refresh); c > 0 && !math.IsInf(c, 0) {
			cs[i] = c
			sum += c
			n++
		}
	}
	if n == 0 {
		return reg, false
	}
	mean := sum / float64(n)
	ws := make([]float64, len(eps))
	var hi float64
	for i := range eps {
		c := cs[i]
		if c == 0 {
			c = mean
		}
		ws[i] = float64(reg[i]) * c / mean
		hi = max(hi, ws[i])
	}
	out := make([]uint32, len(eps))
	for i, w := range ws {
		out[i] = uint32(max(1, math.Round(w/hi*maxScaled)))
	}
	return out, true
}

const maxScaled = 10000

// Ticker calls a function every period on a goroutine of its own until
// stopped.
type Ticker struct {
	stop, done chan struct{}
}

// StartTicker calls f every period() (read again after each call).
func StartTicker(period func() time.Duration, f func()) *Ticker {
	t := &Ticker{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(t.done)
		tm := time.NewTimer(period())
		defer tm.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tm.C:
				f()
				tm.Reset(period())
			}
		}
	}()
	return t
}

// Stop stops the ticker and waits for a call of f in progress to end.
// Safe to call more than once, not concurrently.
func (t *Ticker) Stop() {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	<-t.done
}
