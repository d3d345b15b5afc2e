package consul

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// HealthChecker is the part of a grpc.health.v1 server GRPCHealth needs;
// google.golang.org/grpc/health's *health.Server implements it.
type HealthChecker interface {
	Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error)
}

// GRPCHealth adapts a grpc.health.v1 server to a registry.HealthFunc, so that the
// TTL heartbeat reports what the server itself reports: the status of
// the instance's service if the server knows it, else that of the
// server as a whole (""). Anything but SERVING is unhealthy, so setting
// NOT_SERVING (as a draining server does) takes the instance out of the
// passing set at the next heartbeat.
func GRPCHealth(hs HealthChecker) registry.HealthFunc {
	return func(ctx context.Context, inst registry.Instance) error {
		resp, err := hs.Check(ctx, &healthpb.HealthCheckRequest{Service: inst.Service})
		if status.Code(err) == codes.NotFound {
			resp, err = hs.Check(ctx, &healthpb.HealthCheckRequest{Service: ""})
		}
		if err != nil {
			return fmt.Errorf("grpc health check: %w", err)
		}
		if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("grpc health: %s", s)
		}
		return nil
	}
}
