package main

import (
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(&out); err != nil {
		t.Fatalf("run() = %v", err)
	}
	want := `local zone eu-1a healthy:
  server-0 (eu-1a)     answered: true
  server-1 (eu-1a)     answered: true
local zone empty:
  server-2 (us-1a)     answered: true
`
	if out.String() != want {
		t.Fatalf("run() printed\n%s\nwant\n%s", out.String(), want)
	}
}
