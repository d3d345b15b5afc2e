package registrytest_test

import (
	"testing"

	_ "github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// TestMemoryOpen runs CheckOpen on the memory backend, whose package
// holds no URL table of this kind.
func TestMemoryOpen(t *testing.T) {
	registrytest.CheckOpen(t,
		[]string{"mem://", "mem://checkopen"},
		[]string{"mem://x?nope=1", "mem://x/svc", "mem://u:p@x"})
}
