package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/wayfinder-rpc/wayfinder/benchmark/internal/harness"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestRun runs the command at tiny sizes and checks that it prints a
// sample with calls for every policy of every group, with the config
// in its notes, and that the variants are those harness.Alternatives pairs.
func TestRun(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-servers", "4", "-tail", "1s"}, &stdout, &stderr); code != 0 {
		t.Fatalf("run = %d, want 0; stderr:\n%s", code, stderr.Bytes())
	}
	var samples []harness.Sample
	if err := json.Unmarshal(stdout.Bytes(), &samples); err != nil {
		t.Fatalf("stdout is not the samples' JSON: %v\n%s", err, stdout.Bytes())
	}
	var want []string
	for _, g := range groups {
		for _, p := range g {
			want = append(want, p.Variant)
		}
	}
	var got []string
	for _, s := range samples {
		got = append(got, s.Variant)
		if s.Metrics["calls"] == 0 {
			t.Errorf("%s made no call: %v", s.Variant, s.Metrics)
		}
		if len(s.Notes) == 0 {
			t.Errorf("%s has no notes, want its config", s.Variant)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("variants = %v, want %v", got, want)
	}
	for _, a := range harness.Alternatives {
		if a.Module != "benchmark/xds" {
			continue
		}
		if !slices.Contains(got, a.Wayfinder) || !slices.Contains(got, a.Alternative) {
			t.Errorf("pair %s / %s not measured; variants %v", a.Wayfinder, a.Alternative, got)
		}
	}
}
