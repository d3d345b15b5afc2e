package registry_test

import (
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// TestURLSecretsEveryScheme: a password or token in a URL of any scheme
// of this module (Kubernetes, a module of its own, runs the same check)
// never shows in an error: not from Open or ValidateURL, through the
// mux or the backend's own Open, not from target parsing, not from
// resolver.NewClient.
func TestURLSecretsEveryScheme(t *testing.T) {
	open := map[string]func(string) error{
		memory.Scheme: func(raw string) error { _, err := memory.Open(raw); return err },
		consul.Scheme: func(raw string) error { _, err := consul.Open(raw); return err },
		etcd.Scheme:   func(raw string) error { _, err := etcd.Open(raw); return err },
	}
	host := map[string]string{memory.Scheme: "name", consul.Scheme: "127.0.0.1:8500", etcd.Scheme: "127.0.0.1:2379"}
	newClient := func(raw string) error {
		cc, err := resolver.NewClient(raw, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			cc.Close()
		}
		return err
	}
	schemes := registry.DefaultURLMux().Schemes()
	if want := []string{consul.Scheme, etcd.Scheme, memory.Scheme}; !slices.Equal(schemes, want) {
		t.Fatalf("DefaultURLMux().Schemes() = %v, want %v: a scheme this test does not know", schemes, want)
	}
	for _, scheme := range schemes {
		t.Run(scheme, func(t *testing.T) {
			registrytest.CheckURLSecrets(t, scheme, host[scheme], open[scheme], newClient)
		})
	}
}

// TestURLRulesMemory: the query rules every backend shares, on a
// backend with no parameters at all.
func TestURLRulesMemory(t *testing.T) {
	registrytest.CheckURLRules(t, "mem://rules", nil)
}
