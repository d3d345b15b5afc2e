package harness

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestMarkdownGolden")

// TestMarkdownGolden renders fixed reports and compares the Markdown
// byte for byte with golden files, so that a change to how the report
// is written, or to its wording, shows in review:
//
//	go test ./benchmark/internal/harness -run MarkdownGolden -update
//
// rewrites them. testdata/report.json is a full run (every scenario on
// memory, Consul, etcd and Kubernetes); the second report takes it to
// the branches a full run misses: failed runs, no Kubernetes and no
// pairs from the xds module.
func TestMarkdownGolden(t *testing.T) {
	full, err := ReadReport(filepath.Join("testdata", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	partial, err := ReadReport(filepath.Join("testdata", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	partial.Config.Backends = slices.DeleteFunc(partial.Config.Backends, func(be string) bool { return be == "kubernetes" })
	partial.Results = slices.DeleteFunc(partial.Results, func(res Result) bool {
		return res.Backend == "kubernetes" || res.Variant == "outlier_detection_experimental"
	})
	partial.Failures = []Failure{
		{Scenario: "outage", Backend: "consul", Run: 2, Error: "consul: restart: exit status 1 | signal: killed\nsecond line, not shown"},
		{Scenario: "picker", Backend: "-", Run: 1, Error: "go test: exit status 2"},
	}
	partial.Notes = append(partial.Notes, "A note added by hand.")

	for _, tc := range []struct {
		name   string
		report *Report
	}{
		{"full", full},
		{"partial", partial},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.report.Markdown("benchmarks", tc.report.Charts())
			golden := filepath.Join("testdata", tc.name+".md")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				n, g, w := diffLine(got, string(want))
				t.Errorf("Markdown differs from %s at line %d:\n got: %q\nwant: %q\n(run with -update if the change is meant)", golden, n, g, w)
			}
		})
	}
}

// diffLine returns the number of the first line where a and b differ,
// and that line of each.
func diffLine(a, b string) (int, string, string) {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(la), len(lb)); i++ {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y || i >= len(la) || i >= len(lb) {
			return i + 1, x, y
		}
	}
	return 0, "", ""
}
