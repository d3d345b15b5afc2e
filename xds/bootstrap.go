package xds

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
)

// BootstrapConfig describes a gRPC client's xDS bootstrap file.
type BootstrapConfig struct {
	// Server is the host:port of the xDS server (of a load balancer in
	// front of its replicas). Required.
	Server string
	// NodeID identifies the client to the server, in its logs and
	// status. Default "wayfinder-xds-client".
	NodeID string
	// Zone is the client's own locality zone, for policies that prefer
	// endpoints in the client's zone. Optional.
	Zone string
	// CAFile is the path, on the client's machine, of the PEM file of
	// the certificate authorities that sign the xDS server's
	// certificate. With it, the client talks to the server over TLS
	// ("tls" channel credentials, gRFC A65), and the server's
	// certificate must name the host of Server; without it, over
	// plaintext ("insecure").
	CAFile string
	// CertFile and KeyFile, together, are the paths on the client's
	// machine of its own certificate and key (PEM), for a server that
	// asks for one (mTLS: wayfinder-xds -tls-client-ca). With them the
	// client talks TLS too; without CAFile it then trusts the system's
	// roots.
	CertFile, KeyFile string
}

// Bootstrap returns the JSON bootstrap file that points a gRPC client at
// an xDS server, over TLS with c.CAFile or a client certificate, else
// over plaintext, for
// GRPC_XDS_BOOTSTRAP (a file's path) or GRPC_XDS_BOOTSTRAP_CONFIG (the
// JSON itself), as every gRPC language reads it.
func Bootstrap(c BootstrapConfig) ([]byte, error) {
	if c.Server == "" {
		return nil, errors.New("xds: bootstrap: no server address")
	}
	if _, _, err := net.SplitHostPort(c.Server); err != nil {
		return nil, fmt.Errorf("xds: bootstrap: server %q: %w", c.Server, err)
	}
	if c.NodeID == "" {
		c.NodeID = "wayfinder-xds-client"
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("xds: bootstrap: a client certificate needs its key, and a key its certificate")
	}
	type tlsConfig struct {
		CAFile   string `json:"ca_certificate_file,omitempty"`
		CertFile string `json:"certificate_file,omitempty"`
		KeyFile  string `json:"private_key_file,omitempty"`
	}
	type creds struct {
		Type   string     `json:"type"`
		Config *tlsConfig `json:"config,omitempty"`
	}
	cr := creds{Type: "insecure"}
	if c.CAFile != "" || c.CertFile != "" {
		cr = creds{Type: "tls", Config: &tlsConfig{CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile}}
	}
	type server struct {
		URI      string   `json:"server_uri"`
		Creds    []creds  `json:"channel_creds"`
		Features []string `json:"server_features"`
	}
	type locality struct {
		Zone string `json:"zone,omitempty"`
	}
	type node struct {
		ID string `json:"id"`
		// Always present: @grpc/grpc-js-xds rejects a node without
		// a locality ("locality field missing in node element").
		Locality locality `json:"locality"`
	}
	b := struct {
		Servers []server `json:"xds_servers"`
		Node    node     `json:"node"`
	}{
		Servers: []server{{URI: c.Server, Creds: []creds{cr}, Features: []string{"xds_v3"}}},
		Node:    node{ID: c.NodeID, Locality: locality{Zone: c.Zone}},
	}
	return json.MarshalIndent(b, "", "  ")
}
