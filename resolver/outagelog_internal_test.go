package resolver

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// records is a slog.Handler that keeps every record.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// levels returns "LEVEL message" for each record.
func (r *records) levels() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.recs))
	for i, rec := range r.recs {
		out[i] = rec.Level.String() + " " + rec.Message
	}
	return out
}

// TestOutageLog: an outage of 150 errors over three minutes logs the
// first at Warn, one Warn reminder per minute, the rest at Debug, and
// one Info on recovery; a second outage starts over.
func TestOutageLog(t *testing.T) {
	rec := &records{}
	o := &outageLog{log: slog.New(rec), service: "hello"}
	t0 := time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)
	o.ok(t0) // healthy: nothing
	for i := range 150 {
		o.failed(t0.Add(time.Duration(i)*1200*time.Millisecond), errors.New("down"))
	}
	o.ok(t0.Add(3 * time.Minute))
	o.ok(t0.Add(3*time.Minute + time.Second)) // still healthy: nothing
	o.failed(t0.Add(4*time.Minute), errors.New("down again"))

	count := map[string]int{}
	for _, l := range rec.levels() {
		count[l]++
	}
	want := map[string]int{
		"WARN wayfinder resolver: watch failing; clients keep the last good set": 2, // one per outage
		"WARN wayfinder resolver: watch still failing":                           2, // at 1 and 2 minutes
		"DEBUG wayfinder resolver: watch error":                                  147,
		"INFO wayfinder resolver: watch recovered":                               1,
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%q logged %d times, want %d (all: %v)", k, count[k], n, count)
		}
	}
	if len(count) != len(want) {
		t.Errorf("unexpected records: %v", count)
	}
	rec.mu.Lock()
	var after time.Duration
	var errs int64
	for _, r := range rec.recs {
		if r.Message == "wayfinder resolver: watch recovered" {
			r.Attrs(func(a slog.Attr) bool {
				switch a.Key {
				case "after":
					after = a.Value.Duration()
				case "errors":
					errs = a.Value.Int64()
				}
				return true
			})
		}
	}
	rec.mu.Unlock()
	if after != 3*time.Minute || errs != 150 {
		t.Errorf("recovery logged after=%v errors=%d, want 3m0s and 150", after, errs)
	}
}
