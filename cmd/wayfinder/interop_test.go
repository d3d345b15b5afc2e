package main

import (
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// TestInstancesEtcdNamingAndProblems: instances finds entries etcd's
// endpoints.Manager wrote once told their prefix, says how when it is
// not, blames no health checks for keys that hold no instance, and
// names the fields it replaced with defaults.
func TestInstancesEtcdNamingAndProblems(t *testing.T) {
	t.Parallel()
	m := testenv.StartEtcd(t)
	cli := testenv.NewEtcdClient(t, nil, m.Endpoint())
	ctx := t.Context()
	em, err := endpoints.NewManager(cli, "naming/team-a/orders")
	if err != nil {
		t.Fatal(err)
	}
	if err := em.AddEndpoint(ctx, "naming/team-a/orders/o1", endpoints.Endpoint{Addr: "127.0.0.1:7101",
		Metadata: map[string]any{"wayfinder": 1, "weight": "heavy", "zone": "z9"}}); err != nil {
		t.Fatal(err)
	}
	base := "etcd://" + m.Endpoint()

	_, errOut, code := wf(t, "instances", base+"/orders")
	if code != 1 || !strings.Contains(errOut, "endpoints.Manager") || !strings.Contains(errOut, "?prefix=foo/bar") {
		t.Errorf("instances without the prefix = %d %q; want a hint on etcd naming prefixes", code, errOut)
	}
	out, errOut, code := wf(t, "instances", base+"/orders?prefix=naming/team-a")
	if code != 0 || !strings.Contains(out, "o1") || !strings.Contains(out, "z9") ||
		!strings.Contains(out, `warning: orders/o1: Metadata.weight = "heavy" ignored`) {
		t.Errorf("instances with the prefix = %d %q %q; want o1 in z9 and a warning about its weight", code, out, errOut)
	}

	if _, err := cli.Put(ctx, "/wayfinder/services/broken/b1", "not json"); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = wf(t, "instances", base+"/broken")
	if code != 1 || strings.Contains(errOut, "health") || !strings.Contains(errOut, "none holds an instance") {
		t.Errorf("instances of keys without instances = %d %q; want a hint about values, not health checks", code, errOut)
	}
}

// TestRegisterChecksTheAddress: wayfinder register, which announces an
// address it does not serve, has the Consul agent probe it: a TCP check
// by default, so a dead server leaves the passing set within seconds.
func TestRegisterChecksTheAddress(t *testing.T) {
	t.Parallel()
	a := testenv.StartConsul(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	target := "consul://" + a.HTTPAddr() + "/probed"
	if out, errOut, code := wf(t, "register", "-once", "-id", "p1", "-addr", lis.Addr().String(), target); code != 0 {
		t.Fatalf("register = %d %q %q", code, out, errOut)
	}
	cli, err := api.NewClient(&api.Config{Address: a.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	checks, err := cli.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	if c := checks["probed:p1:tcp"]; c == nil || c.Type != "tcp" {
		t.Fatalf("agent checks = %v; want a TCP check probed:p1:tcp", checks)
	}
	passing := func() int {
		entries, _, err := cli.Health().Service("probed", "", true, nil)
		if err != nil {
			return -1
		}
		return len(entries)
	}
	wait.For(t, 10*time.Second, "p1 passing", func() bool { return passing() == 1 })
	lis.Close()
	start := time.Now()
	wait.For(t, 5*time.Second, "p1 out of the passing set after its server died", func() bool { return passing() == 0 })
	t.Logf("the registered address stopped listening; out of the passing set %v later", time.Since(start).Round(10*time.Millisecond))
	if _, errOut, code := wf(t, "register", "-once", "-check", "udp", "-addr", "127.0.0.1:1", target); code != 2 || !strings.Contains(errOut, "want tcp, grpc or none") {
		t.Errorf("register -check udp = %d %q; want a usage error", code, errOut)
	}
}

// TestCallNamesInstanceRegisteredByHostName: the answering instance is
// named even when it was registered by host name and the peer is an IP.
func TestCallNamesInstanceRegisteredByHostName(t *testing.T) {
	r := memory.Named("cli-call-host").Open()
	addr := startHello(t, "byname")
	_, port, _ := net.SplitHostPort(addr)
	if err := r.Register(t.Context(), registry.Instance{ID: "byname", Service: "hello", Address: "localhost:" + port}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := wf(t, "call", "mem://cli-call-host/hello", "SayHello")
	if code != 0 || !strings.Contains(out, "answered by byname (localhost:"+port+" = 127.0.0.1:"+port+")") {
		t.Fatalf("call = %d %q %q; want the answer attributed to instance byname", code, out, errOut)
	}
}

// TestInstancesConsulForeignFields: a Consul registration made by
// another tool, with Weights.Passing and a foreign wayfinder_weight, is
// listed with Consul's weight and a warning line about the field.
func TestInstancesConsulForeignFields(t *testing.T) {
	t.Parallel()
	a := testenv.StartConsul(t)
	cli, err := api.NewClient(&api.Config{Address: a.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "k1", Name: "kitex", Address: "127.0.0.1", Port: 7201,
		Weights: &api.AgentWeights{Passing: 7, Warning: 1}, Meta: map[string]string{"wayfinder_weight": "heavy"}}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := wf(t, "instances", "consul://"+a.HTTPAddr()+"/kitex")
	if code != 0 || !regexp.MustCompile(`(?m)^k1 +127\.0\.0\.1:7201 +- +- +7 `).MatchString(out) ||
		!strings.Contains(out, `warning: kitex/k1: Meta.wayfinder_weight = "heavy" ignored`) {
		t.Errorf("instances = %d %q %q; want k1 with weight 7 and a warning about wayfinder_weight", code, out, errOut)
	}
	out, _, code = wf(t, "instances", "-o", "json", "consul://"+a.HTTPAddr()+"/kitex")
	if code != 0 || !strings.Contains(out, `"problems": [`) {
		t.Errorf("instances -o json = %d %q; want the problem in \"problems\"", code, out)
	}
}

// TestCallThroughServerReflection: wayfinder call -reflect describes the
// method through the reflection that server.WithReflection serves.
func TestCallThroughServerReflection(t *testing.T) {
	reg := memory.Named("cli-call-reflect").Open()
	s, err := server.New(reg, "hello", server.WithID("r1"), server.WithReflection())
	if err != nil {
		t.Fatal(err)
	}
	hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: "r1"})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	out, errOut, code := wf(t, "call", "-reflect", "-d", `{"num1":1,"num2":2}`, "mem://cli-call-reflect/hello", "SayHello")
	if code != 0 || !strings.Contains(out, "answered by r1") || !strings.Contains(out, `"result":3`) {
		t.Errorf("call -reflect = %d %q %q; want r1's answer, described by reflection", code, out, errOut)
	}
}
