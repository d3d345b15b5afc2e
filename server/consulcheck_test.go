package server_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/server"
)

const consulChildEnv = "WAYFINDER_TEST_CHILD_CONSUL_SERVER"

// The test binary doubles as a server.Server process registered in
// Consul, so that a test can SIGKILL it.
func init() {
	agent := os.Getenv(consulChildEnv)
	if agent == "" {
		return
	}
	var opts []consul.Option
	if os.Getenv(consulChildEnv+"_NO_GRPC") != "" {
		opts = append(opts, consul.WithoutServerGRPCCheck())
	}
	reg, err := consul.New(agent, opts...)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	s, err := server.New(reg, "killed", server.WithID("victim"))
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: "victim"})
	if err := s.Start(context.Background()); err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	<-s.Registered()
	fmt.Println("ADDR", s.Addr())
	select {} // until killed
}

// killBound is how soon Consul must drop a SIGKILLed server.Server from
// its passing set: one probe interval and timeout, plus 2 s for the
// agent's update and the blocking query.
const killBound = consul.DefaultServerGRPCInterval + consul.DefaultServerGRPCTimeout + 2*time.Second

func passingIDs(t *testing.T, r registry.Discovery, svc string) []string {
	t.Helper()
	insts, err := r.Lookup(t.Context(), svc)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var ids []string
	for _, in := range insts {
		ids = append(ids, in.ID)
	}
	return ids
}

// TestConsulDropsSIGKILLedServer: a server.Server process killed with
// SIGKILL leaves Consul's passing set within killBound, through the
// native gRPC check that is on by default, not after the TTL.
func TestConsulDropsSIGKILLedServer(t *testing.T) {
	agent := testenv.StartConsul(t)
	reader, err := consul.New(agent.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reader.Close() })

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), consulChildEnv+"="+agent.HTTPAddr())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || !strings.HasPrefix(line, "ADDR ") {
		t.Fatalf("child server said %q, %v", line, err)
	}
	wait.For(t, 10*time.Second, "the child in Consul's passing set", func() bool {
		return strings.Join(passingIDs(t, reader, "killed"), ",") == "victim"
	})
	// The agent probes the server itself.
	checks, err := reader.Client().Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	if c := checks["killed:victim:grpc"]; c == nil || c.Type != "grpc" {
		t.Fatalf("agent checks = %v; want a gRPC check killed:victim:grpc next to the TTL heartbeat", checks)
	}

	cmd.Process.Kill()
	cmd.Wait()
	killed := time.Now()
	wait.For(t, killBound, fmt.Sprintf("the SIGKILLed server to leave the passing set within %v", killBound), func() bool {
		return len(passingIDs(t, reader, "killed")) == 0
	})
	t.Logf("SIGKILLed server left Consul's passing set %v after the kill (bound %v; TTL-only: up to %v)",
		time.Since(killed).Round(10*time.Millisecond), killBound, consul.DefaultTTL)
}

// TestConsulCriticalWhenNotServing: a server.Server that goes
// NOT_SERVING is critical in Consul within the gRPC check's bound, with
// the default configuration.
func TestConsulCriticalWhenNotServing(t *testing.T) {
	agent := testenv.StartConsul(t)
	reg, err := consul.New(agent.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	s, err := server.New(reg, "sick", server.WithID("s1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitRegistered(t, s)
	defer s.Stop(context.Background())
	wait.For(t, 10*time.Second, "s1 passing", func() bool { return strings.Join(passingIDs(t, reg, "sick"), ",") == "s1" })
	s.Health().SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	start := time.Now()
	// The probe fails at once on NOT_SERVING: one interval, plus slack.
	bound := consul.DefaultServerGRPCInterval + 2*time.Second
	wait.For(t, bound, fmt.Sprintf("NOT_SERVING s1 critical within %v", bound), func() bool {
		return len(passingIDs(t, reg, "sick")) == 0
	})
	t.Logf("NOT_SERVING server left the passing set after %v (bound %v)", time.Since(start).Round(10*time.Millisecond), bound)
}

// TestConsulServerGRPCCheckCanBeTurnedOff: WithoutServerGRPCCheck, or a
// URL that asks for the TTL check alone (?check=ttl), leaves only the TTL
// heartbeat, for agents that cannot reach the server.
func TestConsulServerGRPCCheckCanBeTurnedOff(t *testing.T) {
	agent := testenv.StartConsul(t)
	for name, open := range map[string]func() (*consul.Registry, error){
		"option":    func() (*consul.Registry, error) { return consul.New(agent.HTTPAddr(), consul.WithoutServerGRPCCheck()) },
		"check=ttl": func() (*consul.Registry, error) { return consul.Open("consul://" + agent.HTTPAddr() + "?check=ttl") },
	} {
		t.Run(name, func(t *testing.T) {
			reg, err := open()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { reg.Close() })
			s, err := server.New(reg, "nocheck", server.WithID(name))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			waitRegistered(t, s)
			defer s.Stop(context.Background())
			checks, err := reg.Client().Agent().Checks()
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for id, c := range checks {
				if strings.HasPrefix(id, "nocheck:"+name+":") {
					kinds = append(kinds, c.Type)
				}
			}
			if strings.Join(kinds, ",") != "ttl" {
				t.Errorf("checks of %s = %v, want only ttl", name, kinds)
			}
		})
	}
}
