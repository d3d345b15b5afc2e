package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestXDSPlugin: "wayfinder xds" runs wayfinder-xds from PATH with its
// arguments, and says how to install it when it is missing.
func TestXDSPlugin(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", dir)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"xds", "bootstrap"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "wayfinder-xds is not installed") || !strings.Contains(errOut.String(), "go install") {
		t.Errorf("run(xds) without wayfinder-xds = %d, stderr %q; want 1 and how to install it", code, errOut.String())
	}

	script := "#!/bin/sh\necho \"args: $*\"\n[ \"$1\" = fail ] && exit 3\nexit 0\n"
	if err := os.WriteFile(filepath.Join(dir, "wayfinder-xds"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), []string{"xds", "bootstrap", "-server", "127.0.0.1:1"}, &out, &errOut); code != 0 || out.String() != "args: bootstrap -server 127.0.0.1:1\n" {
		t.Errorf("run(xds bootstrap ...) = %d, stdout %q, stderr %q; want 0 and the arguments passed on", code, out.String(), errOut.String())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"xds", "fail"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "status 3") {
		t.Errorf("run(xds fail) = %d, stderr %q; want 1 and the status", code, errOut.String())
	}
}
