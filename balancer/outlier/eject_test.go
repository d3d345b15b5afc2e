package outlier

import (
	"fmt"
	"testing"
	"time"
)

// ep is an endpoint's state before evaluate, as a table row gives it.
type ep struct {
	consec, succ, fail int64
	ejectedAgo         time.Duration // 0: not ejected
	mult               int
}

func TestEvaluate(t *testing.T) {
	now := time.Unix(1000, 0)
	cfg := func(js string) *Config {
		t.Helper()
		c, err := ParseConfig([]byte(js))
		if err != nil {
			t.Fatalf("ParseConfig(%s) = %v", js, err)
		}
		return c
	}
	for _, tc := range []struct {
		name      string
		cfg       string
		eps       []ep
		rateTick  bool   // the failure-rate interval ends now
		want      string // verdicts: "+i" eject endpoint i, "-i" return it
		wantMults []int
		wantWake  time.Duration
	}{
		{
			name: "consecutive failures at the threshold eject",
			cfg:  `{"consecutiveFailures":3,"baseEjectionTime":"10s","interval":"1m"}`,
			eps:  []ep{{consec: 3}, {consec: 2}},
			want: "+0", wantMults: []int{1, 0}, wantWake: 10 * time.Second,
		},
		{
			name: "the cap holds ejections to maxEjectionPercent, in resolver order",
			cfg:  `{"consecutiveFailures":2,"maxEjectionPercent":40,"baseEjectionTime":"1h","interval":"1m"}`,
			eps:  []ep{{}, {}, {consec: 2}, {consec: 5}, {consec: 2}},
			want: "+2 +3", wantMults: []int{0, 0, 1, 1, 0}, wantWake: time.Minute,
		},
		{
			name: "one endpoint may always be ejected",
			cfg:  `{"consecutiveFailures":1,"maxEjectionPercent":1,"interval":"1m"}`,
			eps:  []ep{{consec: 1}, {consec: 1}},
			want: "+0", wantMults: []int{1, 0}, wantWake: 30 * time.Second,
		},
		{
			name: "maxEjectionPercent 0 ejects none",
			cfg:  `{"consecutiveFailures":1,"maxEjectionPercent":0,"interval":"1m"}`,
			eps:  []ep{{consec: 9}},
			want: "", wantMults: []int{0}, wantWake: time.Minute,
		},
		{
			name: "an ejection over returns; a current one counts against the cap",
			cfg:  `{"consecutiveFailures":1,"maxEjectionPercent":50,"baseEjectionTime":"10s","interval":"1m"}`,
			eps:  []ep{{ejectedAgo: 20 * time.Second, mult: 1}, {ejectedAgo: 5 * time.Second, mult: 1}, {consec: 1}, {}},
			want: "-0 +2", wantMults: []int{1, 1, 1, 0}, wantWake: 5 * time.Second,
		},
		{
			name: "the n-th ejection in a row lasts n bases, capped",
			cfg:  `{"consecutiveFailures":1,"maxEjectionPercent":100,"baseEjectionTime":"10s","maxEjectionTime":"25s","interval":"1m"}`,
			eps:  []ep{{consec: 1, mult: 1}, {consec: 1, mult: 3}},
			want: "+0 +1", wantMults: []int{2, 3}, wantWake: 20 * time.Second,
		},
		{
			name:     "failure rate at an interval's end ejects, given enough calls",
			cfg:      `{"consecutiveFailures":0,"failureRateThreshold":0.5,"minimumRequests":10,"maxEjectionPercent":100,"interval":"1s"}`,
			eps:      []ep{{succ: 5, fail: 5}, {succ: 2, fail: 7}, {succ: 6, fail: 4}},
			rateTick: true,
			want:     "+0", wantMults: []int{1, 0, 0}, wantWake: time.Second,
		},
		{
			name:     "a healthy interval shortens the next ejection",
			cfg:      `{"interval":"1s"}`,
			eps:      []ep{{mult: 2}, {mult: 0}},
			rateTick: true,
			want:     "", wantMults: []int{1, 0}, wantWake: time.Second,
		},
		{
			name: "failure rate is not judged before the interval ends",
			cfg:  `{"consecutiveFailures":0,"failureRateThreshold":0.1,"minimumRequests":1,"maxEjectionPercent":100,"interval":"1s"}`,
			eps:  []ep{{fail: 100, mult: 2}},
			want: "", wantMults: []int{2}, wantWake: time.Second,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg(tc.cfg)
			eps := make([]*endpoint, len(tc.eps))
			for i, e := range tc.eps {
				eps[i] = &endpoint{mult: e.mult}
				eps[i].consec.Store(e.consec)
				eps[i].succ.Store(e.succ)
				eps[i].fail.Store(e.fail)
				if e.ejectedAgo > 0 {
					eps[i].ejectedAt = now.Add(-e.ejectedAgo)
				}
			}
			nextRate := now.Add(time.Duration(c.Interval))
			if tc.rateTick {
				nextRate = now
			}
			vs, n, next, wake := evaluate(c, eps, now, nextRate)
			got, ejections := "", 0
			for _, v := range vs {
				i := 0
				for eps[i] != v.ep {
					i++
				}
				sign := "-"
				if v.eject {
					sign = "+"
					ejections++
				}
				got += fmt.Sprintf(" %s%d", sign, i)
			}
			if len(got) > 0 {
				got = got[1:]
			}
			if got != tc.want || n != ejections {
				t.Errorf("evaluate(%v) verdicts = %q (%d ejections), want %q", tc.eps, got, n, tc.want)
			}
			for i, e := range eps {
				if e.mult != tc.wantMults[i] {
					t.Errorf("evaluate(%v): endpoint %d has %d ejections in a row, want %d", tc.eps, i, e.mult, tc.wantMults[i])
				}
			}
			if wake != tc.wantWake {
				t.Errorf("evaluate(%v) wake = %v, want %v", tc.eps, wake, tc.wantWake)
			}
			if tc.rateTick != next.After(nextRate) {
				t.Errorf("evaluate(%v) next interval end = %v, was %v: want it moved only at an interval's end", tc.eps, next, nextRate)
			}
			for _, v := range vs {
				if v.eject && (v.ep.consec.Load() != 0 || v.ep.ejectedAt != now) {
					t.Errorf("evaluate(%v): an ejected endpoint kept %d consecutive failures or was ejected at %v, want 0 and now", tc.eps, v.ep.consec.Load(), v.ep.ejectedAt)
				}
			}
		})
	}
}
