package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// xdsServerCommand is the command of xdsModule that measures Wayfinder's
// xDS server (module xds) and prints the samples as JSON: wfbench must
// not import go-control-plane, so the xds scenario builds and runs it,
// as slow_backend does cmd/xdstail.
const xdsServerCommand = "./cmd/xdsbench"

// xdsServer is the xds scenario: registry change to grpc-go's xDS
// client's picks beside Wayfinder's resolver; one xDS server with many
// clients of many services; one service of many endpoints, Delta
// against State of the World. Its backend is the command's own memory
// registry.
func xdsServer(tb testing.TB, _ *Backend, cfg Config) ([]Sample, error) {
	dir := cfg.ModuleDir
	if dir == "" {
		var err error
		if dir, err = moduleRoot(); err != nil {
			return nil, err
		}
	}
	tmp, err := os.MkdirTemp("", "wfbench-xdsbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "xdsbench")
	bctx, cancel := context.WithTimeout(tb.Context(), 30*time.Minute) // the module's first build takes minutes
	defer cancel()
	if err := runGo(bctx, filepath.Join(dir, filepath.FromSlash(xdsModule)), "build", "-o", bin, xdsServerCommand); err != nil {
		return nil, fmt.Errorf("%s: %w", xdsModule, err)
	}
	rctx, cancel := context.WithTimeout(tb.Context(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(rctx, bin,
		"-changes", strconv.Itoa(cfg.XDSChanges), "-fleet-changes", strconv.Itoa(cfg.XDSChanges), "-eds-changes", strconv.Itoa(cfg.XDSChanges),
		"-clients", strconv.Itoa(cfg.XDSClients), "-services", strconv.Itoa(cfg.XDSServices), "-go-clients", strconv.Itoa(cfg.XDSGoClients),
		"-endpoints", strconv.Itoa(cfg.XDSEndpoints), "-eds-clients", strconv.Itoa(cfg.XDSEDSClients))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %v\n%s", xdsModule, xdsServerCommand, err, stderr.Bytes())
	}
	var out []Sample
	if err := json.Unmarshal(b, &out); err != nil || len(out) == 0 {
		return nil, fmt.Errorf("%s: %s printed no samples (%v): %q", xdsModule, xdsServerCommand, err, b)
	}
	return out, nil
}
