package faults

import (
	"strings"
	"testing"
)

func up(ids ...string) Event { return Event{Update: true, Set: ids} }
func fail() Event            { return Event{Err: "registry: unavailable"} }

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
			err := Check(c.events, truth)
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
	if err := Check([]Event{up("a"), fail(), up(), up("b")}, noEmpty); err == nil || !strings.Contains(err.Error(), "error produced an empty set") {
		t.Errorf("Check(error then empty set) = %v, want an error-produced-empty-set violation", err)
	}
	if err := Check(nil, [][]string{{"a"}, {"a"}}); err == nil {
		t.Errorf("Check with a truth holding a set twice = nil, want an error")
	}
}
