package outlier

import (
	"context"
	"time"
)

// run is the ejection goroutine: it evaluates when a threshold is
// reached, at each interval, and when an ejection ends.
func (b *balancer) run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		case <-t.C:
		}
		vs, changes, wake := b.evaluate(time.Now())
		if len(vs) > 0 {
			b.childMu.Lock()
			if !b.closed {
				for _, c := range changes {
					b.setEjected(c.sc, c.eject)
				}
			}
			// Only now does package inspect show the verdicts: the child
			// was told, so its picker already follows them. An ejection
			// lasts from here, where its endpoint stops getting calls.
			b.mu.Lock()
			now := time.Now()
			for _, v := range vs {
				v.ep.shownEjected = v.eject
				if v.eject {
					v.ep.ejectedAt = now
				}
			}
			b.mu.Unlock()
			b.childMu.Unlock()
		}
		t.Reset(wake)
	}
}

type change struct {
	sc    *subConn
	eject bool
}

// evaluate decides ejections and returns at now: the verdicts, their
// changes for every SubConn of the endpoints concerned, and when to run
// next.
func (b *balancer) evaluate(now time.Time) ([]verdict, []change, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	vs, ejections, next, wake := evaluate(b.cfg, b.eps, now, b.nextRate)
	b.nextRate = next
	b.ejections += uint64(ejections)
	var out []change
	for _, v := range vs {
		for _, sc := range v.ep.subConns {
			out = append(out, change{sc, v.eject})
		}
	}
	return vs, out, wake
}

// verdict is an endpoint to eject, or to return if eject is false.
type verdict struct {
	ep    *endpoint
	eject bool
}

// evaluate decides, at now, which of eps to eject and which to return,
// and updates their records and counters to match. nextRate is when the
// current failure-rate interval ends. It returns the verdicts in order,
// the number of ejections among them, when the next interval ends, and
// how long until evaluate should run again (at least 1ms).
func evaluate(cfg *Config, eps []*endpoint, now, nextRate time.Time) (out []verdict, ejections int, next time.Time, wake time.Duration) {
	base, maxT := time.Duration(cfg.BaseEjectionTime), time.Duration(cfg.MaxEjectionTime)
	until := func(ep *endpoint) time.Time {
		return ep.ejectedAt.Add(min(base*time.Duration(ep.mult), maxT))
	}
	ejected := 0
	for _, ep := range eps {
		if ep.ejectedAt.IsZero() {
			continue
		}
		if !now.Before(until(ep)) {
			ep.ejectedAt = time.Time{}
			ep.consec.Store(0)
			out = append(out, verdict{ep, false})
			continue
		}
		ejected++
	}
	rateTick := !now.Before(nextRate)
	if rateTick {
		nextRate = now.Add(time.Duration(cfg.Interval))
	}
	allowed := 0
	if p := *cfg.MaxEjectionPercent; p > 0 {
		allowed = max(1, len(eps)*p/100)
	}
	for _, ep := range eps {
		eject := cfg.ConsecutiveFailures > 0 && ep.consec.Load() >= int64(cfg.ConsecutiveFailures)
		if rateTick {
			s, f := ep.succ.Swap(0), ep.fail.Swap(0)
			if !ep.ejectedAt.IsZero() {
				continue
			}
			if cfg.FailureRateThreshold > 0 && s+f >= int64(cfg.MinimumRequests) && float64(f) >= cfg.FailureRateThreshold*float64(s+f) {
				eject = true
			}
			if !eject && ep.mult > 0 {
				ep.mult-- // a healthy interval shortens the next ejection
			}
		}
		if !eject || !ep.ejectedAt.IsZero() || ejected >= allowed {
			continue
		}
		ep.ejectedAt = now
		ejections++
		if base*time.Duration(ep.mult) < maxT {
			ep.mult++
		}
		ep.consec.Store(0)
		ep.succ.Store(0)
		ep.fail.Store(0)
		ejected++
		out = append(out, verdict{ep, true})
	}
	wake = nextRate.Sub(now)
	for _, ep := range eps {
		if !ep.ejectedAt.IsZero() {
			wake = min(wake, until(ep).Sub(now))
		}
	}
	return out, ejections, nextRate, max(wake, time.Millisecond)
}
