package etcd

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/backoff"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// Format is the layout of the values a Registry writes. Readers decode
// both, whatever their own Format.
type Format int

const (
	// FormatNaming, the default, is etcd's own gRPC naming value
	// (go.etcd.io/etcd/client/v3/naming/endpoints):
	//
	//	{"Op":0,"Addr":"10.0.0.7:50051","Metadata":{"wayfinder":1,"version":"v1.4.2",...}}
	//
	// so that clients on etcd's naming resolver dial Wayfinder services.
	// The key carries the service and ID; Metadata carries the other
	// fields.
	FormatNaming Format = iota
	// FormatV1 is the value Wayfinder wrote before FormatNaming:
	//
	//	{"v":1,"id":"…","service":"…","address":"10.0.0.7:50051",...}
	//
	// Wayfinder releases before naming support skip FormatNaming values,
	// so a fleet whose clients are not all upgraded keeps writing this
	// during the migration (see docs/etcd.md).
	FormatV1
)

func (f Format) String() string {
	switch f {
	case FormatNaming:
		return "naming"
	case FormatV1:
		return "v1"
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}

// WithFormat sets the layout of the values Register writes (default
// FormatNaming). Reading is not affected: both are always decoded.
func WithFormat(f Format) Option { return func(o *options) { o.format = f } }

// valueVersion is the version of the FormatV1 value. A reader skips
// values of any other version: a new version means an incompatible
// change, and writers add optional fields without bumping it.
const valueVersion = 1

// namingVersion is the version of Wayfinder's fields inside a naming
// value's Metadata, under the "wayfinder" key.
const namingVersion = 1

// wireInstance is the FormatV1 value stored at <prefix>/<service>/<id>.
type wireInstance struct {
	V       int    `json:"v"`
	ID      string `json:"id"`
	Service string `json:"service"`
	Address string `json:"address"`
	wireFields
}

// wireFields are the optional fields, shared by both formats. Registered
// is Instance.Registered in RFC 3339 with nanoseconds, UTC.
type wireFields struct {
	Version    string            `json:"version,omitempty"`
	Zone       string            `json:"zone,omitempty"`
	Weight     int               `json:"weight,omitempty"`
	Tags       []string          `json:"tags,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	Registered string            `json:"registered,omitempty"`
}

// namingMeta is the Metadata of a FormatNaming value Wayfinder writes.
type namingMeta struct {
	Wayfinder int `json:"wayfinder"`
	wireFields
}

// namingValue is etcd's naming value (its endpoints/internal.Update). Op
// is always 0 (Add) in stored values.
type namingValue struct {
	Op       int    `json:"Op"`
	Addr     string `json:"Addr"`
	Metadata any    `json:"Metadata,omitempty"`
}

func fieldsOf(inst registry.Instance) wireFields {
	w := wireFields{Version: inst.Version, Zone: inst.Zone, Weight: inst.Weight, Tags: inst.Tags, Metadata: inst.Metadata}
	if !inst.Registered.IsZero() {
		w.Registered = inst.Registered.UTC().Format(time.RFC3339Nano)
	}
	return w
}

func encode(inst registry.Instance, f Format) ([]byte, error) {
	if f == FormatV1 {
		return json.Marshal(wireInstance{V: valueVersion, ID: inst.ID, Service: inst.Service, Address: inst.Address, wireFields: fieldsOf(inst)})
	}
	return json.Marshal(namingValue{Addr: inst.Address, Metadata: namingMeta{Wayfinder: namingVersion, wireFields: fieldsOf(inst)}})
}

// decode parses the value at key, which must be servicePrefix+id, in
// either format. A FormatV1 value must name the same service and ID as
// its key, so that a foreign or corrupt value can never pose as another
// instance; a naming value takes both from its key. Required fields (the
// address; in FormatV1 also v, id and service) that are missing or
// invalid are an error. An optional field that is malformed or invalid is
// dropped and returned as a problem: the instance is kept with that
// field's default.
func decode(servicePrefix, service string, key, value []byte) (registry.Instance, []registry.FieldProblem, error) {
	id, ok := strings.CutPrefix(string(key), servicePrefix)
	if !ok || id == "" || strings.Contains(id, "/") {
		return registry.Instance{}, nil, errors.New("key is not <prefix>/<service>/<id>")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(value, &obj); err != nil || obj == nil {
		if err == nil {
			err = errors.New("null")
		}
		return registry.Instance{}, nil, fmt.Errorf("not an instance: %w", err)
	}
	inst := registry.Instance{ID: id, Service: service}
	var fields map[string]json.RawMessage
	fieldName := func(f string) string { return f }
	if _, legacy := obj["v"]; legacy {
		var v int
		if err := json.Unmarshal(obj["v"], &v); err != nil || v != valueVersion {
			return registry.Instance{}, nil, fmt.Errorf("value version %s, this reader knows %d", obj["v"], valueVersion)
		}
		var w struct {
			ID      string `json:"id"`
			Service string `json:"service"`
			Address string `json:"address"`
		}
		for name, dst := range map[string]*string{"id": &w.ID, "service": &w.Service, "address": &w.Address} {
			if raw, ok := obj[name]; ok {
				if err := json.Unmarshal(raw, dst); err != nil {
					return registry.Instance{}, nil, fmt.Errorf("%s: %w", name, err)
				}
			}
		}
		if w.Service != service || w.ID != id {
			return registry.Instance{}, nil, fmt.Errorf("value names %s/%s, key names %s/%s", w.Service, w.ID, service, id)
		}
		inst.Address, fields = w.Address, obj
	} else if raw, ok := obj["Addr"]; ok {
		if err := json.Unmarshal(raw, &inst.Address); err != nil {
			return registry.Instance{}, nil, fmt.Errorf("field Addr: %w", err)
		}
		// Metadata is anyone's: Wayfinder reads it only when it carries
		// Wayfinder's marker, and ignores any other value.
		var md map[string]json.RawMessage
		if json.Unmarshal(obj["Metadata"], &md) == nil && md["wayfinder"] != nil {
			fields = md
		}
		fieldName = func(f string) string { return "Metadata." + f }
	} else {
		return registry.Instance{}, nil, errors.New("not an instance: neither a Wayfinder value (\"v\") nor an etcd naming value (\"Addr\")")
	}
	var problems []registry.FieldProblem
	bad := func(f string, raw json.RawMessage, err error) {
		value := string(raw)
		var str string
		if json.Unmarshal(raw, &str) == nil {
			value = str // a JSON string is shown as its text, as Consul's values are
		}
		problems = append(problems, registry.FieldProblem{Service: service, ID: id, Field: fieldName(f), Value: driver.CutValue(value), Reason: err.Error()})
	}
	var stamp string
	for _, err := range []error{
		driver.ReadJSONField(fields, "version", &inst.Version), driver.ReadJSONField(fields, "zone", &inst.Zone),
		driver.ReadJSONField(fields, "weight", &inst.Weight), driver.ReadJSONField(fields, "tags", &inst.Tags),
		driver.ReadJSONField(fields, "metadata", &inst.Metadata), driver.ReadJSONField(fields, "registered", &stamp),
	} {
		if fe, ok := err.(*driver.FieldError); ok {
			bad(fe.Name, fe.Raw, fe.Err)
		}
	}
	if stamp != "" {
		t, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			bad("registered", fields["registered"], errors.New("not an RFC 3339 time"))
		} else {
			inst.Registered = t
		}
	}
	inst, more, err := driver.Sanitize(inst, func(f string) string {
		return fieldName(strings.ToLower(f[:1]) + f[1:])
	})
	if err != nil {
		return registry.Instance{}, nil, err
	}
	return inst, append(problems, more...), nil
}

// newBackoff is the etcd driver's retry delay: from 50ms, doubling to
// 3s, jittered, so that many clients recovering from one outage do not
// retry in lockstep.
func newBackoff() *backoff.Backoff {
	return &backoff.Backoff{Base: 50 * time.Millisecond, Max: 3 * time.Second}
}
