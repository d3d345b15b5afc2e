package xds_test

import (
	"encoding/json"
	"testing"

	"github.com/wayfinder-rpc/wayfinder/xds"
)

func TestBootstrap(t *testing.T) {
	b, err := xds.Bootstrap(xds.BootstrapConfig{Server: "127.0.0.1:18000"})
	if err != nil {
		t.Fatalf("Bootstrap() = %v", err)
	}
	var got struct {
		Servers []struct {
			URI      string   `json:"server_uri"`
			Features []string `json:"server_features"`
		} `json:"xds_servers"`
		Node map[string]json.RawMessage `json:"node"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("Bootstrap() = %s: %v", b, err)
	}
	if len(got.Servers) != 1 || got.Servers[0].URI != "127.0.0.1:18000" {
		t.Errorf("Bootstrap() servers = %+v, want 127.0.0.1:18000", got.Servers)
	}
	// @grpc/grpc-js-xds refuses a node without a locality, even when
	// the client has no zone.
	if _, ok := got.Node["locality"]; !ok || string(got.Node["id"]) == "" {
		t.Errorf("Bootstrap() node = %s, want an id and a locality", b)
	}
	for _, c := range []xds.BootstrapConfig{{}, {Server: "no-port"}, {Server: "127.0.0.1:1", CertFile: "c.pem"}, {Server: "127.0.0.1:1", KeyFile: "k.pem"}} {
		if _, err := xds.Bootstrap(c); err == nil {
			t.Errorf("Bootstrap(%+v) = nil error", c)
		}
	}
}
