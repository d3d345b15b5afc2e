package registrytest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestScratchBackend builds the backend in testdata/scratchbackend as a
// module of its own (example.com/scratchbackend), outside this
// repository, with Wayfinder replaced by this tree, and runs its test,
// which passes registrytest.RunConformanceTests on it. The backend uses
// exported packages only (registry, registry/driver, registry/memory's
// Store): were it to need an internal one, Go would refuse to build it
// ("use of internal package ... not allowed") and this test would fail.
// It needs no network: the requirements are this module's, at the same
// versions, with its go.sum, from the module cache; the build cache is
// shared.
func TestScratchBackend(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	const self = "github.com/wayfinder-rpc/wayfinder"
	text := regexp.MustCompile(`(?m)^module \S+$`).ReplaceAllString(string(gomod), "module example.com/scratchbackend")
	text += "\nrequire " + self + " v0.0.0\n\nreplace " + self + " => " + root + "\n"
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", []byte(text))
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	write("go.sum", sum)
	for _, name := range []string{"scratch.go", "scratch_test.go"} {
		src, err := os.ReadFile(filepath.Join("testdata", "scratchbackend", name))
		if err != nil {
			t.Fatal(err)
		}
		write(name, src)
	}
	cmd := exec.CommandContext(t.Context(), "go", "test", "-count=1", "-v", "-run", "^TestConformance$", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "GOPROXY=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test in the scratch module %s: %v\n%s", dir, err, out)
	}
	passed := regexp.MustCompile(`(?m)^    --- PASS: TestConformance/`).FindAll(out, -1)
	if !regexp.MustCompile(`(?m)^--- PASS: TestConformance `).Match(out) || len(passed) < 20 {
		t.Fatalf("go test in the scratch module %s passed %d conformance cases; want TestConformance passed with at least 20:\n%s", dir, len(passed), out)
	}
	t.Logf("the scratch backend passed %d conformance cases", len(passed))
}
