package driver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// FieldError is a field of a registration's JSON whose value has the
// wrong type, as ReadJSONField reports it: what a backend turns into a
// registry.FieldProblem while it keeps the rest of the instance.
type FieldError struct {
	Name string          // the field's JSON name
	Raw  json.RawMessage // its value as it came
	Err  error           // what is wrong with it, in a reader's words
}

func (e *FieldError) Error() string { return e.Name + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// ReadJSONField decodes fields[name] into dst if it is there and not
// null. A value of the wrong type leaves dst as it was and returns a
// *FieldError.
func ReadJSONField[T any](fields map[string]json.RawMessage, name string, dst *T) error {
	raw, ok := fields[name]
	if !ok || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return &FieldError{Name: name, Raw: raw, Err: JSONTypeError(err)}
	}
	*dst = v
	return nil
}

// JSONTypeError shortens encoding/json's type errors ("json: cannot
// unmarshal string into Go struct field .weight of type int") to what a
// reader acts on ("a JSON string where int is wanted"); other errors are
// returned as they are.
func JSONTypeError(err error) error {
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return fmt.Errorf("a JSON %s where %s is wanted", te.Value, te.Type)
	}
	return err
}
