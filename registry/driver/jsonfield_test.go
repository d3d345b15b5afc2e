package driver_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

func TestReadJSONField(t *testing.T) {
	fields := map[string]json.RawMessage{"weight": json.RawMessage(`"5"`), "zone": json.RawMessage(`"eu"`), "tags": json.RawMessage(`null`)}
	w, zone, tags := 7, "", []string{"kept"}
	err := driver.ReadJSONField(fields, "weight", &w)
	var fe *driver.FieldError
	if !errors.As(err, &fe) || fe.Name != "weight" || string(fe.Raw) != `"5"` || err.Error() != "weight: a JSON string where int is wanted" {
		t.Errorf("weight \"5\" into an int: %v (%#v); want a FieldError naming the field and the types", err, fe)
	}
	if w != 7 {
		t.Errorf("weight after a type error = %d; want it unchanged (7)", w)
	}
	if err := driver.ReadJSONField(fields, "zone", &zone); err != nil || zone != "eu" {
		t.Errorf("zone = %q, %v; want eu", zone, err)
	}
	if err := driver.ReadJSONField(fields, "tags", &tags); err != nil || len(tags) != 1 {
		t.Errorf("tags null = %v, %v; want nil error and the value untouched", tags, err)
	}
	if err := driver.ReadJSONField(fields, "missing", &zone); err != nil || zone != "eu" {
		t.Errorf("missing field = %q, %v; want nil error and the value untouched", zone, err)
	}
}
