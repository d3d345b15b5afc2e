package etcd

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/backoff"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// valueVersion is the version of the JSON value format. A reader skips
// values of any other version: a new version means an incompatible
// change, and writers add optional fields without bumping it.
const valueVersion = 1

// wireInstance is the value stored at <prefix>/<service>/<id>.
type wireInstance struct {
	V        int               `json:"v"`
	ID       string            `json:"id"`
	Service  string            `json:"service"`
	Address  string            `json:"address"`
	Version  string            `json:"version,omitempty"`
	Zone     string            `json:"zone,omitempty"`
	Weight   int               `json:"weight,omitempty"`
	Tags     []string          `json:"tags,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Registered is Instance.Registered in RFC 3339 with nanoseconds,
	// UTC: an optional field, so older readers ignore it and values
	// without it (older or foreign writers) decode with no stamp. It is
	// a string rather than a time.Time so that a malformed stamp loses
	// only the stamp, not the instance.
	Registered string `json:"registered,omitempty"`
}

func encode(inst registry.Instance) ([]byte, error) {
	w := wireInstance{
		V: valueVersion, ID: inst.ID, Service: inst.Service, Address: inst.Address,
		Version: inst.Version, Zone: inst.Zone, Weight: inst.Weight,
		Tags: inst.Tags, Metadata: inst.Metadata,
	}
	if !inst.Registered.IsZero() {
		w.Registered = inst.Registered.UTC().Format(time.RFC3339Nano)
	}
	return json.Marshal(w)
}

// decode parses the value at key, which must be servicePrefix+id. The
// instance must name the same service and ID as its key and be valid, so
// that a foreign or corrupt value can never pose as another instance.
func decode(servicePrefix, service string, key, value []byte) (registry.Instance, error) {
	id, ok := strings.CutPrefix(string(key), servicePrefix)
	if !ok || id == "" || strings.Contains(id, "/") {
		return registry.Instance{}, errors.New("key is not <prefix>/<service>/<id>")
	}
	var w wireInstance
	if err := json.Unmarshal(value, &w); err != nil {
		return registry.Instance{}, fmt.Errorf("not an instance: %w", err)
	}
	if w.V != valueVersion {
		return registry.Instance{}, fmt.Errorf("value version %d, this reader knows %d", w.V, valueVersion)
	}
	if w.Service != service || w.ID != id {
		return registry.Instance{}, fmt.Errorf("value names %s/%s, key names %s/%s", w.Service, w.ID, service, id)
	}
	inst := registry.Instance{
		ID: w.ID, Service: w.Service, Address: w.Address, Version: w.Version,
		Zone: w.Zone, Weight: w.Weight, Tags: w.Tags, Metadata: w.Metadata,
	}
	if err := inst.Validate(); err != nil {
		return registry.Instance{}, err
	}
	if w.Registered != "" {
		if t, err := time.Parse(time.RFC3339Nano, w.Registered); err == nil {
			inst.Registered = t
		}
	}
	return inst, nil
}

// newBackoff is the etcd driver's retry delay: from 50ms, doubling to
// 3s, jittered, so that many clients recovering from one outage do not
// retry in lockstep.
func newBackoff() *backoff.Backoff {
	return &backoff.Backoff{Base: 50 * time.Millisecond, Max: 3 * time.Second}
}
