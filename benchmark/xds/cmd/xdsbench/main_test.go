package main

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/wayfinder-rpc/wayfinder/benchmark/internal/harness"
)

// TestMain runs the command's children when the test binary is re-run
// as one (the command starts its children from its own executable).
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "-child" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// TestRun runs the command at tiny sizes: every variant is measured, the
// xDS server keeps one upstream watch per service for all its clients,
// and no client rejects a response.
func TestRun(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"-changes", "2", "-fleet-changes", "3", "-eds-changes", "3", "-clients", "10", "-services", "2",
		"-go-clients", "1", "-endpoints", "50", "-eds-clients", "2"}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("run = %d, want 0; stderr:\n%s", code, stderr.Bytes())
	}
	var samples []harness.Sample
	if err := json.Unmarshal(stdout.Bytes(), &samples); err != nil {
		t.Fatalf("stdout is not the samples' JSON: %v\n%s", err, stdout.Bytes())
	}
	var got []string
	by := map[string]map[string]float64{}
	for _, s := range samples {
		got = append(got, s.Variant)
		by[s.Variant] = s.Metrics
	}
	if want := []string{"resolver", "xds_go", "grpc_go_clients", "raw_ads_clients", "eds_sotw", "eds_delta"}; !slices.Equal(got, want) {
		t.Fatalf("variants = %v, want %v", got, want)
	}
	if m := by["raw_ads_clients"]; m["upstream_watches"] != 2 || m["streams"] != 10 || m["nacks"] != 0 {
		t.Errorf("raw_ads_clients = %v, want 2 upstream watches, 10 streams, 0 NACKs", m)
	}
	if m := by["eds_delta"]; m["changes"] != 3 || m["endpoints"] != 50 {
		t.Errorf("eds_delta = %v, want 3 changes of a 50-endpoint service", m)
	}
}
