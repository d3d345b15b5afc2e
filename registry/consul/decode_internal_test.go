package consul

import (
	"testing"

	"github.com/hashicorp/consul/api"
)

// FuzzDecode: whatever another tool registered, decode never panics,
// keeps a valid instance whenever the address and an ID are usable, and
// what it keeps encodes to a registration that decodes to itself.
func FuzzDecode(f *testing.F) {
	f.Add("a", "127.0.0.1", 7000, 7, "heavy", "v1", "z\x01", "tag", "k", "v")
	f.Add("svc:id", "", 1, 0, "3", "", "", "", "wayfinder_x", "")
	f.Fuzz(func(t *testing.T, id, addr string, port, passing int, weight, version, zone, tag, mk, mv string) {
		e := &api.ServiceEntry{
			Node: &api.Node{Address: "10.0.0.1"},
			Service: &api.AgentService{ID: id, Service: "s", Address: addr, Port: port, Tags: []string{tag},
				Weights: api.AgentWeights{Passing: passing, Warning: 1},
				Meta:    map[string]string{metaWeight: weight, metaVersion: version, metaZone: zone, mk: mv}},
		}
		inst, _, err := decode("s", e)
		if err != nil {
			return
		}
		if err := inst.Validate(); err != nil {
			t.Fatalf("decode kept an invalid instance %+v: %v", inst, err)
		}
		reg, err := encode(inst)
		if err != nil {
			t.Fatalf("encode(%+v) = %v", inst, err)
		}
		back, problems, err := decode("s", &api.ServiceEntry{Service: &api.AgentService{ID: reg.ID, Service: reg.Name,
			Address: reg.Address, Port: reg.Port, Tags: reg.Tags, Meta: reg.Meta, Weights: api.AgentWeights(*reg.Weights)}})
		if err != nil || len(problems) > 0 || !back.Equal(inst) {
			t.Fatalf("decode(encode(%+v)) = %+v, %v, %v", inst, back, problems, err)
		}
	})
}
