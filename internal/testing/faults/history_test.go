package faults

import (
	"strings"
	"testing"
	"time"
)

func up(ids ...string) Event { return Event{Update: true, Set: ids} }
func fail() Event            { return Event{Err: "registry: unavailable"} }

// held is an update the guard holds, keeping kept.
func held(kept []string, ids ...string) Event { return Event{Update: true, Set: ids, Kept: kept} }

// at is e at d after a fixed start.
func at(d time.Duration, e Event) Event {
	e.At = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(d)
	return e
}

const hold = 10 * time.Second // the guard's, as Check is told

// TestCheck shows the checker catches every violation it is meant to.
func TestCheck(t *testing.T) {
	truth := [][]string{{"a"}, {"a", "b"}, {"b"}, {}, {"c"}}
	for _, c := range []struct {
		name   string
		events []Event
		want   string // substring of the error; empty for none
	}{
		{"every state", []Event{up("a"), up("a", "b"), up("b"), up(), up("c")}, ""},
		{"skipped states", []Event{up("a"), up("c")}, ""},
		{"repeat after an error", []Event{up("a"), fail(), up("a"), up("c")}, ""},
		{"errors only between", []Event{up("a"), fail(), fail(), up("b"), up("c")}, ""},
		{"going back", []Event{up("a"), up("b"), up("a", "b"), up("c")}, "goes back"},
		{"repeat with nothing changed", []Event{up("a"), up("a"), up("c")}, "nothing changed"},
		{"unknown set", []Event{up("a"), up("z"), up("c")}, "never held"},
		{"not converged", []Event{up("a"), up("b")}, "final set"},
		{"no update at all", nil, "final set"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Check(c.events, truth, hold)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("Check(%v) = %v, want nil", c.events, err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("Check(%v) = %v, want an error containing %q", c.events, err, c.want)
			}
		})
	}
	// An error that empties the set, where the registry never was empty.
	noEmpty := [][]string{{"a"}, {"b"}}
	if err := Check([]Event{up("a"), fail(), up(), up("b")}, noEmpty, hold); err == nil || !strings.Contains(err.Error(), "error produced an empty set") {
		t.Errorf("Check(error then empty set) = %v, want an error-produced-empty-set violation", err)
	}
	if err := Check(nil, [][]string{{"a"}, {"a"}}, hold); err == nil {
		t.Errorf("Check with a truth holding a set twice = nil, want an error")
	}
}

// TestCheckHeld shows how the checker judges updates the mass-removal
// guard holds, and that it catches each way a hold can break its promise.
// The truth drains a service to zero and refills it, as the suite does.
func TestCheckHeld(t *testing.T) {
	truth := [][]string{{"a", "b", "c"}, {"b", "c"}, {"c"}, {}, {"d"}, {"d", "e"}}
	bc := []string{"b", "c"}
	for _, c := range []struct {
		name   string
		events []Event
		hold   time.Duration
		want   string // substring of the error; empty for none
	}{
		{"drain held, then released", []Event{up("a", "b", "c"), up("b", "c"), held(bc, "b", "c", "d"), up("d", "e")}, hold, ""},
		{"held twice in a run", []Event{up("a", "b", "c"), up("b", "c"), held(bc, "b", "c", "d"), held(bc, "b", "c", "d", "e"), up("d", "e")}, hold, ""},
		{"held after an error", []Event{up("a", "b", "c"), up("b", "c"), fail(), held(bc, "b", "c", "d"), up("d", "e")}, hold, ""},
		{"held repeats after an error", []Event{up("b", "c"), held(bc, "b", "c", "d"), fail(), held(bc, "b", "c", "d"), up("d", "e")}, hold, ""},
		{"released just within the slack", []Event{up("b", "c"), at(0, held(bc, "b", "c", "d")), at(hold+HoldSlack, up("d", "e"))}, hold, ""},

		{"keeps one the client was told is gone", []Event{up("a", "b", "c"), up("b", "c"), held([]string{"a", "b", "c"}, "a", "b", "c", "d"), up("d", "e")}, hold, "it was told it is gone"},
		{"a client that joins during the hold", []Event{held([]string{"c"}, "c", "d"), up("d", "e")}, hold, ""},
		{"keeps one no state since held", []Event{up("c"), held([]string{"a", "c"}, "a", "c", "d"), up("d", "e")}, hold, "no state since held"},
		{"keeps one not in the set", []Event{up("b", "c"), held([]string{"b", "z"}, "b", "c", "d"), up("d", "e")}, hold, "which is not in it"},
		{"the rest is not a truth state", []Event{up("a", "b", "c"), up("b", "c"), held(bc, "b", "c", "e"), up("d", "e")}, hold, "the rest [e] is a set the registry never held"},
		{"the rest goes back", []Event{up("b", "c"), held(bc, "b", "c", "d"), held([]string{"b"}, "b", "c"), up("d", "e")}, hold, "goes back"},
		{"held repeat with nothing changed", []Event{up("b", "c"), held(bc, "b", "c", "d"), held(bc, "b", "c", "d"), up("d", "e")}, hold, "nothing changed"},
		{"released too late", []Event{up("b", "c"), at(0, held(bc, "b", "c", "d")), at(hold+HoldSlack+time.Second, up("d", "e"))}, hold, "ended after 13s"},
		{"a hold that never ends", []Event{up("a", "b", "c"), up("b", "c"), held(bc, "b", "c", "d"), held(bc, "b", "c", "d", "e")}, hold, "never ended"},
		{"held with the guard off", []Event{up("b", "c"), held(bc, "b", "c", "d"), up("d", "e")}, 0, "with the guard off"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Check(c.events, truth, c.hold)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("Check(%v) = %v, want nil", c.events, err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("Check(%v) = %v, want an error containing %q", c.events, err, c.want)
			}
		})
	}
}

// TestCheckHeldLaggingClient: the guard keeps what its shared watch had,
// and a ClientConn that skipped that state (its resolver only takes the
// latest set) gets a held update keeping an instance it never saw: that
// is fine if a state between the client's and the held one had it.
func TestCheckHeldLaggingClient(t *testing.T) {
	truth := [][]string{{"a"}, {"a", "b"}, {}, {"c"}}
	if err := Check([]Event{up("a"), held([]string{"a", "b"}, "a", "b"), up("c")}, truth, hold); err != nil {
		t.Errorf("a lagging client's held update: %v, want nil", err)
	}
	gone := [][]string{{"a", "b"}, {"a"}, {}, {"c"}}
	if err := Check([]Event{up("a", "b"), up("a"), held([]string{"a", "b"}, "a", "b"), up("c")}, gone, hold); err == nil || !strings.Contains(err.Error(), "told it is gone") {
		t.Errorf("a held update keeping b, which the client saw leave: %v, want \"told it is gone\"", err)
	}
}
