package testenv

import "testing"

// Third-party gRPC clients that tests run against Wayfinder's server, to
// show that it follows gRPC's conventions as tools Wayfinder did not
// write read them. `make servers` builds both from their tools modules
// under internal/tools and exports their paths in these variables.
const (
	HealthProbeBinEnv = "WAYFINDER_GRPC_HEALTH_PROBE_BIN"
	GRPCurlBinEnv     = "WAYFINDER_GRPCURL_BIN"
)

// HealthProbeBinary returns the path of grpc-health-probe, failing the
// test if it cannot be found.
func HealthProbeBinary(t testing.TB) string {
	t.Helper()
	return Binary(t, HealthProbeBinEnv, "grpc-health-probe")
}

// GRPCurlBinary returns the path of grpcurl, failing the test if it
// cannot be found.
func GRPCurlBinary(t testing.TB) string {
	t.Helper()
	return Binary(t, GRPCurlBinEnv, "grpcurl")
}
