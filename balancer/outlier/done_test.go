package outlier

import (
	"context"
	"testing"

	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/fakecc"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// TestDoneCounts: a call's Done counts its result on its endpoint, with
// and without failure-rate detection: a failure adds to the failures in
// a row, a success resets them, and the interval's successes and
// failures are counted only when the failure rate is watched.
func TestDoneCounts(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "down")
	for _, tc := range []struct {
		name     string
		cfg      string
		counting bool
	}{
		{"consecutive only", `{"consecutiveFailures":100,"interval":"1h"}`, false},
		{"with failure rate", `{"consecutiveFailures":100,"failureRateThreshold":0.9,"interval":"1h"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := fakecc.Build(Name, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			insts := []registry.Instance{{ID: "a", Service: "s", Address: "10.0.0.1:80"}}
			if err := h.UpdateReady(instance.Endpoints(insts)); err != nil {
				t.Fatal(err)
			}
			b := h.B.(*balancer)
			b.mu.Lock()
			ep := b.eps[0]
			b.mu.Unlock()
			p, _ := h.CC.Picker()
			call := func(err error) {
				t.Helper()
				r, perr := p.Pick(gbalancer.PickInfo{Ctx: context.Background()})
				if perr != nil {
					t.Fatalf("Pick() = %v", perr)
				}
				r.Done(gbalancer.DoneInfo{Err: err})
			}
			check := func(step string, consec, succ, fail int64) {
				t.Helper()
				if !tc.counting {
					succ, fail = 0, 0
				}
				if c, s, f := ep.consec.Load(), ep.succ.Load(), ep.fail.Load(); c != consec || s != succ || f != fail {
					t.Errorf("after %s: %d failures in a row, %d successes, %d failures; want %d, %d, %d", step, c, s, f, consec, succ, fail)
				}
			}
			call(unavailable)
			call(unavailable)
			check("two failures", 2, 0, 2)
			call(nil)
			check("a success", 0, 1, 2)
			call(status.Error(codes.NotFound, "an answer"))
			check("an application error", 0, 2, 2)
			call(unavailable)
			check("a failure", 1, 2, 3)
		})
	}
}
