package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/server"
)

// healthNames are the names a HelloService server must answer health
// checks for: the whole server, the registry name, and each proto service.
var healthNames = []string{"", "hello", hellopb.HelloService_ServiceDesc.ServiceName, healthpb.Health_ServiceDesc.ServiceName}

// statuses asks grpc-go's health client about each name at addr.
func statuses(t *testing.T, addr string) map[string]string {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	out := map[string]string{}
	for _, name := range healthNames {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: name})
		cancel()
		out[name] = resp.GetStatus().String()
		if err != nil {
			out[name] = err.Error()
		}
	}
	return out
}

// drainRecorder records the health statuses at Deregister, which Stop
// calls after setting NOT_SERVING and before closing the listener.
type drainRecorder struct {
	*memory.Registry
	t       *testing.T
	atDrain map[string]string
}

func (d *drainRecorder) Deregister(ctx context.Context, inst registry.Instance) error {
	d.atDrain = statuses(d.t, inst.Address)
	return d.Registry.Deregister(ctx, inst)
}

// TestHealthUnderProtoNames: the server publishes its health under "",
// the registry name and every registered service's fully-qualified name,
// as grpc-health-probe -service and Kubernetes probes ask; the drain sets
// them all NOT_SERVING.
func TestHealthUnderProtoNames(t *testing.T) {
	rec := &drainRecorder{Registry: memory.New(), t: t}
	s, err := server.New(rec, "hello")
	if err != nil {
		t.Fatal(err)
	}
	hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: "h"})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for name, st := range statuses(t, s.Addr().String()) {
		if st != "SERVING" {
			t.Errorf("Check(%q) after Start = %s, want SERVING", name, st)
		}
	}
	if err := s.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, name := range healthNames {
		if st := rec.atDrain[name]; st != "NOT_SERVING" {
			t.Errorf("Check(%q) during the drain = %s, want NOT_SERVING", name, st)
		}
	}
}

// TestReflection: WithReflection lists the registered services to a
// reflection client (what grpcurl list does); without it, reflection is
// Unimplemented.
func TestReflection(t *testing.T) {
	for _, on := range []bool{true, false} {
		var opts []server.Option
		if on {
			opts = append(opts, server.WithReflection())
		}
		s, err := server.New(memory.New(), "hello", opts...)
		if err != nil {
			t.Fatal(err)
		}
		hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: "h"})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient(s.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		var listed []string
		if err == nil {
			err = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		}
		if err == nil {
			var resp *reflectionpb.ServerReflectionResponse
			if resp, err = stream.Recv(); err == nil {
				for _, svc := range resp.GetListServicesResponse().GetService() {
					listed = append(listed, svc.GetName())
				}
			}
		}
		cancel()
		cc.Close()
		s.Stop(t.Context())
		hasHello := false
		for _, n := range listed {
			hasHello = hasHello || n == hellopb.HelloService_ServiceDesc.ServiceName
		}
		if on && (err != nil || !hasHello) {
			t.Errorf("with WithReflection, ListServices = %v, %v; want HelloService listed", listed, err)
		}
		if !on && err == nil {
			t.Errorf("without WithReflection, ListServices = %v, nil; want Unimplemented", listed)
		}
	}
}

// TestConsulGRPCCheckByProtoName: a native Consul gRPC check that names
// the proto service, as operators configure it, passes against a
// server.Server, and fails when the server drains.
func TestConsulGRPCCheckByProtoName(t *testing.T) {
	agent := testenv.StartConsul(t)
	reg, err := consul.New(agent.HTTPAddr(), consul.WithGRPCCheck(200*time.Millisecond, time.Second),
		consul.WithGRPCCheckService(hellopb.HelloService_ServiceDesc.ServiceName, false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	s, err := server.New(reg, "hello")
	if err != nil {
		t.Fatal(err)
	}
	hellopb.RegisterHelloServiceServer(s.GRPC(), &hello.Server{Name: "h"})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	check := func() string {
		// The agent's own view: the catalog syncs output-only changes late.
		checks, err := reg.Client().Agent().Checks()
		if err != nil {
			return err.Error()
		}
		for _, c := range checks {
			if c.Type == "grpc" {
				return c.Status + ": " + c.Output
			}
		}
		return "no grpc check"
	}
	wait.For(t, 10*time.Second, "the gRPC check naming "+hellopb.HelloService_ServiceDesc.ServiceName+" to pass", func() bool {
		// The initial status is the registrant's; the output is the agent's own probe.
		c := check()
		return strings.HasPrefix(c, "passing") && strings.Contains(c, "success")
	})
	s.Health().SetServingStatus(hellopb.HelloService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	wait.For(t, 10*time.Second, "the gRPC check to go critical", func() bool { return strings.HasPrefix(check(), "critical") })
}
