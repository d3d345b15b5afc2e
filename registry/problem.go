package registry

import "fmt"

// FieldProblem is an optional field of a registration that a backend
// could not read: a foreign tool's value under a key Wayfinder also uses
// (Meta.wayfinder_weight = "heavy"), or a value that Instance.Validate
// rejects. The instance is kept, with that field's default. Only an
// instance without a valid ID, Service or Address is left out (there is
// no instance without them), and that too is reported as a problem, with
// "dropped" or "left out" in its Reason.
type FieldProblem struct {
	Service string
	ID      string
	Field   string // in the backend's own terms: "Meta.wayfinder_weight", "Metadata.weight"
	Value   string // as found, cut to 64 bytes
	Reason  string
}

func (p FieldProblem) String() string {
	return fmt.Sprintf("%s/%s: %s = %q ignored (default used): %s", p.Service, p.ID, p.Field, p.Value, p.Reason)
}

// FieldProblemReporter is an optional interface of a Discovery that
// keeps the field problems it met while decoding instances, for tools
// such as the wayfinder command. Test for it with a type assertion.
type FieldProblemReporter interface {
	// FieldProblems returns the problems of the last decode of each
	// instance of service that had any, sorted by ID then Field. An
	// instance that no longer exists may still be listed: callers match
	// the IDs against a Lookup.
	FieldProblems(service string) []FieldProblem
}
