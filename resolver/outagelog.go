package resolver

import (
	"log/slog"
	"time"
)

// outageReminder is how often a continuing outage is logged again at
// Warn; the errors in between go to Debug.
const outageReminder = time.Minute

// outageLog keeps an upstream outage readable in the logs without
// flooding them, whatever the retry rate: the first error of an outage
// at Warn, the next ones at Debug with a Warn reminder every
// outageReminder, and the recovery at Info with how long the clients ran
// on their last good set. It belongs to one watch goroutine.
type outageLog struct {
	log     *slog.Logger
	service string
	since   time.Time // start of the current outage; zero while healthy
	warned  time.Time // last Warn of the current outage
	errors  int
}

func (o *outageLog) failed(now time.Time, err error) {
	o.errors++
	switch {
	case o.since.IsZero():
		o.since, o.warned = now, now
		o.log.Warn("wayfinder resolver: watch failing; clients keep the last good set", "service", o.service, "err", err)
	case now.Sub(o.warned) >= outageReminder:
		o.warned = now
		o.log.Warn("wayfinder resolver: watch still failing", "service", o.service,
			"for", now.Sub(o.since).Round(time.Millisecond), "errors", o.errors, "err", err)
	default:
		o.log.Debug("wayfinder resolver: watch error", "service", o.service, "errors", o.errors, "err", err)
	}
}

func (o *outageLog) ok(now time.Time) {
	if o.since.IsZero() {
		return
	}
	o.log.Info("wayfinder resolver: watch recovered", "service", o.service,
		"after", now.Sub(o.since).Round(time.Millisecond), "errors", o.errors)
	o.since, o.warned, o.errors = time.Time{}, time.Time{}, 0
}
