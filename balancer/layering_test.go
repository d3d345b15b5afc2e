package balancer_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering checks what a program pulls in by importing a package
// under balancer/. A policy reads the instance from the endpoint's
// attributes (package instance) and nothing else of the resolver, so no
// package here may depend on the resolver, whose cache brings the
// registry drivers, a backend and backoff with it. Policies do not depend
// on OpenTelemetry at all; lbmetrics, which a user imports to ask for
// metrics, uses its API but never an SDK or an exporter.
func TestLayering(t *testing.T) {
	const module = "github.com/wayfinder-rpc/wayfinder/"
	never := []string{ // import path prefixes
		module + "resolver",
		module + "registry/driver",
		module + "registry/memory",
		module + "internal/backoff",
		"go.opentelemetry.io/otel/sdk",
		"go.opentelemetry.io/otel/exporters",
		"github.com/prometheus",
	}
	metricsOnly := []string{"go.opentelemetry.io"}
	within := func(dep, prefix string) bool {
		return dep == prefix || strings.HasPrefix(dep, prefix+"/")
	}

	// The dependencies of each package under balancer/, tests excluded.
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, deps, _ := strings.Cut(l, " ")
		if pkg == module+"balancer/internal/example" {
			continue // the Examples' scaffolding starts servers on the embedded registry
		}
		checked++
		forbidden := never
		if pkg != module+"balancer/lbmetrics" {
			forbidden = append(forbidden[:len(never):len(never)], metricsOnly...)
		}
		var bad []string
		for _, dep := range strings.Fields(deps) {
			for _, prefix := range forbidden {
				if within(dep, prefix) {
					bad = append(bad, dep)
				}
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s depends on %d forbidden packages:\n\t%s", pkg, len(bad), strings.Join(bad, "\n\t"))
		}
	}
	if checked < 8 {
		t.Fatalf("go list listed %d packages outside balancer/internal, want every policy and its helpers:\n%s", checked, out)
	}
}
