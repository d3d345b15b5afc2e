package zookeeper_test

import (
	"errors"
	"testing"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
	"github.com/wayfinder-rpc/wayfinder/registry/zookeeper"
)

func TestURLRules(t *testing.T) {
	registrytest.CheckURLRules(t, "zk://127.0.0.1:2181", map[string]string{
		"root": "/microservices", "timeout": "3s", "session": "10s",
	})
}

func TestURLSecrets(t *testing.T) {
	registrytest.CheckURLSecrets(t, "zk", "127.0.0.1:2181", func(raw string) error {
		r, err := zookeeper.Open(raw)
		if err == nil {
			r.Close()
		}
		return err
	})
}

func TestURLRoot(t *testing.T) {
	r, err := zookeeper.Open("zk://127.0.0.1:2181,127.0.0.1:2182?root=/microservices")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Root() != "/microservices" {
		t.Fatalf("Root() = %q, want /microservices", r.Root())
	}
	for _, raw := range []string{"zk://127.0.0.1:2181?root=rel", "zk://127.0.0.1:2181?root=/a/", "zk://127.0.0.1:2181/microservices", "zk://127.0.0.1:x"} {
		if err := registry.ValidateURL(raw); !errors.Is(err, registry.ErrInvalidURL) {
			t.Errorf("ValidateURL(%q) = %v, want ErrInvalidURL", raw, err)
		}
	}
}
