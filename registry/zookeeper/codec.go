package zookeeper

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// nodeVersion is the version of Wayfinder's fields in a node, under the
// "wayfinder" key. A reader reads them only at this version; a node
// without the key is read as Kratos writes it.
const nodeVersion = 1

// node is the JSON of an instance node. Its first five fields are
// Kratos's registry.ServiceInstance (id, name, version, metadata,
// endpoints), so that Kratos clients can call Wayfinder services too;
// the others are Wayfinder's, which Kratos ignores.
type node struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Version    string            `json:"version"`
	Metadata   map[string]string `json:"metadata"`
	Endpoints  []string          `json:"endpoints"`
	Wayfinder  int               `json:"wayfinder"`
	Zone       string            `json:"zone,omitempty"`
	Weight     int               `json:"weight,omitempty"`
	Tags       []string          `json:"tags,omitempty"`
	Registered string            `json:"registered,omitempty"`
}

func encode(inst registry.Instance) ([]byte, error) {
	n := node{
		ID: inst.ID, Name: inst.Service, Version: inst.Version, Metadata: inst.Metadata,
		Endpoints: []string{"grpc://" + inst.Address},
		Wayfinder: nodeVersion, Zone: inst.Zone, Weight: inst.Weight, Tags: inst.Tags,
	}
	if n.Metadata == nil {
		n.Metadata = map[string]string{}
	}
	if !inst.Registered.IsZero() {
		n.Registered = inst.Registered.UTC().Format(time.RFC3339Nano)
	}
	return json.Marshal(n)
}

// decode reads the node <root>/<service>/<id>. The address is the first
// grpc:// endpoint; a node without one, or whose id or name is not its
// path's, is an error (it never poses as another instance). An optional
// field that is malformed or invalid is dropped and returned as a
// problem; the instance is kept with that field's default.
func decode(service, id string, data []byte) (registry.Instance, []registry.FieldProblem, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		if err == nil {
			err = errors.New("null")
		}
		return registry.Instance{}, nil, fmt.Errorf("not an instance: %w", err)
	}
	var head struct {
		ID        string   `json:"id"`
		Name      string   `json:"name"`
		Endpoints []string `json:"endpoints"`
	}
	for name, dst := range map[string]any{"id": &head.ID, "name": &head.Name, "endpoints": &head.Endpoints} {
		if raw, ok := obj[name]; ok && !bytes.Equal(raw, []byte("null")) {
			if err := json.Unmarshal(raw, dst); err != nil {
				return registry.Instance{}, nil, fmt.Errorf("%s: %w", name, driver.JSONTypeError(err))
			}
		}
	}
	if head.ID != "" && head.ID != id || head.Name != "" && head.Name != service {
		return registry.Instance{}, nil, fmt.Errorf("node names %s/%s, its path %s/%s", head.Name, head.ID, service, id)
	}
	inst := registry.Instance{ID: id, Service: service}
	for _, ep := range head.Endpoints {
		if u, err := url.Parse(ep); err == nil && u.Scheme == "grpc" && u.Host != "" {
			inst.Address = u.Host
			break
		}
	}
	if inst.Address == "" {
		return registry.Instance{}, nil, fmt.Errorf("no grpc:// endpoint in %q", head.Endpoints)
	}
	var problems []registry.FieldProblem
	bad := func(f string, raw json.RawMessage, err error) {
		value := string(raw)
		var str string
		if json.Unmarshal(raw, &str) == nil {
			value = str
		}
		problems = append(problems, registry.FieldProblem{Service: service, ID: id, Field: f, Value: driver.CutValue(value), Reason: err.Error()})
	}
	var ver int
	_ = json.Unmarshal(obj["wayfinder"], &ver)
	errs := []error{driver.ReadJSONField(obj, "version", &inst.Version), driver.ReadJSONField(obj, "metadata", &inst.Metadata)}
	var stamp string
	if ver == nodeVersion {
		errs = append(errs, driver.ReadJSONField(obj, "zone", &inst.Zone), driver.ReadJSONField(obj, "weight", &inst.Weight),
			driver.ReadJSONField(obj, "tags", &inst.Tags), driver.ReadJSONField(obj, "registered", &stamp))
	} else if w, ok := inst.Metadata["weight"]; ok {
		// Kratos's weighted selectors read metadata "weight".
		n, err := strconv.Atoi(w)
		if err != nil || n <= 0 {
			bad("metadata.weight", json.RawMessage(strconv.Quote(w)), errors.New("not a positive integer"))
		} else {
			inst.Weight = n
		}
	}
	for _, err := range errs {
		if fe, ok := err.(*driver.FieldError); ok {
			bad(fe.Name, fe.Raw, fe.Err)
		}
	}
	if stamp != "" {
		t, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			bad("registered", obj["registered"], errors.New("not an RFC 3339 time"))
		} else {
			inst.Registered = t
		}
	}
	if len(inst.Metadata) == 0 {
		inst.Metadata = nil
	}
	inst, more, err := driver.Sanitize(inst, func(f string) string { return strings.ToLower(f[:1]) + f[1:] })
	if err != nil {
		return registry.Instance{}, nil, err
	}
	return inst, append(problems, more...), nil
}
