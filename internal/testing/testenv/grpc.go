package testenv

import (
	"net"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
)

// HelloServer is a real HelloService server on a loopback port.
type HelloServer struct {
	Name    string
	Addr    string
	Server  *grpc.Server
	Health  *health.Server
	stopped atomic.Bool
}

// StartHello starts a HelloService server named name on 127.0.0.1:0,
// with the grpc.health.v1 service reporting SERVING. It is stopped at the
// end of the test.
func StartHello(t testing.TB, name string) *HelloServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: listen: %v", err)
	}
	s := &HelloServer{Name: name, Addr: lis.Addr().String(), Server: grpc.NewServer(), Health: health.NewServer()}
	hellopb.RegisterHelloServiceServer(s.Server, &hello.Server{Name: name})
	healthpb.RegisterHealthServer(s.Server, s.Health)
	go s.Server.Serve(lis) // returns when Stop is called below
	t.Cleanup(s.Stop)
	return s
}

// Stop stops the server at once. It is idempotent.
func (s *HelloServer) Stop() {
	if s.stopped.CompareAndSwap(false, true) {
		s.Health.Shutdown()
		s.Server.Stop()
	}
}
