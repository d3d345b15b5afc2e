package orcaweight

import (
	"slices"
	"testing"
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	gbalancer "google.golang.org/grpc/balancer"

	"github.com/wayfinder-rpc/wayfinder/balancer/internal/lbconfig"
)

type fakeClock struct{ ns int64 }

func (c *fakeClock) now() int64              { return c.ns }
func (c *fakeClock) advance(d time.Duration) { c.ns += int64(d) }

func config(t *testing.T) Config {
	t.Helper()
	var c Config
	if err := c.Validate("test"); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBlackoutAndExpiry follows one endpoint's reports on a fake clock,
// times being those of the updates (Weights) that first see a report:
// no weight before 10 s of reports, the blended weight after, the
// registry weight again 3 min after the last report, and a new blackout
// when reports resume.
func TestBlackoutAndExpiry(t *testing.T) {
	clk := &fakeClock{ns: 1}
	tr := NewTracker(config(t), clk.now)
	a, b := tr.NewEndpoint(), tr.NewEndpoint()
	eps, reg := []*Endpoint{a, b}, []uint32{1, 1}
	report := func() { // a at a quarter of b's utilisation, same rate
		a.Report(&v3orcapb.OrcaLoadReport{ApplicationUtilization: 0.2, RpsFractional: 10})
		b.Report(&v3orcapb.OrcaLoadReport{ApplicationUtilization: 0.8, RpsFractional: 10})
	}
	check := func(when string, want []uint32, wantUsed bool) {
		t.Helper()
		got, used := tr.Weights(eps, reg, true)
		if !slices.Equal(got, want) || used != wantUsed {
			t.Errorf("%s: Weights = %v, %v; want %v, %v", when, got, used, want, wantUsed)
		}
	}
	check("before any report", reg, false)
	report()
	check("at the first report", reg, false) // the update that sees it starts the blackout
	clk.advance(9 * time.Second)
	report()
	check("9 s into the blackout", reg, false)
	clk.advance(time.Second)
	check("after the blackout", []uint32{10000, 2500}, true)
	clk.advance(DefaultWeightExpirationPeriod - time.Second - time.Nanosecond) // the last report was 1 s ago
	check("just before expiry", []uint32{10000, 2500}, true)
	clk.advance(time.Nanosecond)
	check("at expiry", reg, false)
	report()
	check("reports resumed", reg, false)
	clk.advance(5 * time.Second)
	report()
	check("reports resumed, in a new blackout", reg, false)
	clk.advance(5 * time.Second)
	check("after the new blackout", []uint32{10000, 2500}, true)
}

// TestMeanAndClientRate: an endpoint without reports gets the mean
// capacity (its registry weight), and a report without rps_fractional
// takes this client's call rate for qps.
func TestMeanAndClientRate(t *testing.T) {
	clk := &fakeClock{ns: 1}
	cfg := config(t)
	zero := lbconfig.Duration(0)
	cfg.BlackoutPeriod = &zero
	tr := NewTracker(cfg, clk.now)
	a, b, c := tr.NewEndpoint(), tr.NewEndpoint(), tr.NewEndpoint()
	eps, reg := []*Endpoint{a, b, c}, []uint32{2, 2, 2}
	// One second: a finishes 30 calls at utilisation 0.3 (c = 100), b 10
	// at 0.2 (c = 50); c reports nothing (mean 75).
	for range 30 {
		a.Done(nil)(gbalancer.DoneInfo{ServerLoad: &v3orcapb.OrcaLoadReport{CpuUtilization: 0.3}})
	}
	for range 10 {
		b.Done(nil)(gbalancer.DoneInfo{ServerLoad: &v3orcapb.OrcaLoadReport{CpuUtilization: 0.2}})
	}
	var childCalls int
	c.Done(func(gbalancer.DoneInfo) { childCalls++ })(gbalancer.DoneInfo{})
	if childCalls != 1 {
		t.Errorf("the child's Done ran %d times, want 1", childCalls)
	}
	clk.advance(time.Second)
	got, used := tr.Weights(eps, reg, true)
	if want := []uint32{10000, 5000, 7500}; !slices.Equal(got, want) || !used {
		t.Errorf("Weights = %v, %v; want %v, true", got, used, want)
	}
}

// TestMetricChange: a config naming another utilisation applies to the
// next reports of endpoints made before it.
func TestMetricChange(t *testing.T) {
	clk := &fakeClock{ns: 1}
	cfg := config(t)
	zero := lbconfig.Duration(0)
	cfg.BlackoutPeriod = &zero
	tr := NewTracker(cfg, clk.now)
	a, b := tr.NewEndpoint(), tr.NewEndpoint()
	cfg.Metric = "pool"
	tr.SetConfig(cfg)
	a.Report(&v3orcapb.OrcaLoadReport{ApplicationUtilization: 0.1, Utilization: map[string]float64{"pool": 0.8}, RpsFractional: 10})
	b.Report(&v3orcapb.OrcaLoadReport{ApplicationUtilization: 0.8, Utilization: map[string]float64{"pool": 0.2}, RpsFractional: 10})
	clk.advance(time.Second)
	got, _ := tr.Weights([]*Endpoint{a, b}, []uint32{1, 1}, true)
	if want := []uint32{2500, 10000}; !slices.Equal(got, want) {
		t.Errorf("Weights = %v, want %v (by the pool utilisation)", got, want)
	}
}
