package app_test

import (
	"testing"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	_ "github.com/wayfinder-rpc/wayfinder/registry/consul"
	_ "github.com/wayfinder-rpc/wayfinder/registry/etcd"
)

// The same fx app as TestHelloAppMemory; only the registry URL changes.

func TestHelloAppConsul(t *testing.T) {
	agent := testenv.StartConsul(t)
	runHelloApp(t, "consul://"+agent.HTTPAddr(), "wayfinder_p2c_ewma")
}

func TestHelloAppEtcd(t *testing.T) {
	member := testenv.StartEtcd(t)
	runHelloApp(t, "etcd://"+member.ClientAddr, "wayfinder_weighted_round_robin")
}
