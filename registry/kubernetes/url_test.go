package kubernetes_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	"github.com/wayfinder-rpc/wayfinder/registry/kubernetes"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// TestURLRules: kubernetes URLs read their query by the rules every
// backend shares. Before, ?ttl= (an empty value) was ignored, and so was
// every other empty value.
func TestURLRules(t *testing.T) {
	t.Setenv("KUBECONFIG", shared.Kubeconfig(t, testenv.KubeAdminToken))
	registrytest.CheckURLRules(t, "kubernetes://", map[string]string{
		"context": "test", "namespace": "prod", "port": "grpc", "timeout": "2s", "ttl": "10s",
	})
}

// TestURLSecrets: a password or token in a kubernetes URL never shows in
// an error (the root module's TestURLSecretsEveryScheme does the same for
// its schemes).
func TestURLSecrets(t *testing.T) {
	registrytest.CheckURLSecrets(t, kubernetes.Scheme, "", func(raw string) error {
		u, err := driver.ParseURL(kubernetes.Scheme, raw)
		if err != nil {
			return err
		}
		_, err = kubernetes.OpenURL(u)
		return err
	})
}

// TestURLDefects: the defects a review of the URL rules found in this
// backend. An empty ?ttl= was ignored
// (the default TTL applied, as if absent); a bare ?tls must be an error
// here as with every backend, whether it knows tls or not.
func TestURLDefects(t *testing.T) {
	for raw, want := range map[string]string{
		"kubernetes://?ttl=":                           "parameter ttl is empty; want a positive duration, such as ttl=30s",
		"kubernetes://?namespace=":                     "parameter namespace is empty",
		"kubernetes://?tls":                            `unknown parameter "tls"`,
		"kubernetes://?port=grpc;ttl=10s":              "';' in the query",
		"kubernetes://u:" + registrytest.Secret + "@/": "carries credentials",
	} {
		err := registry.ValidateURL(raw)
		if !errors.Is(err, registry.ErrInvalidURL) || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateURL(%q) = %v; want ErrInvalidURL mentioning %q", raw, err, want)
		}
	}
}
