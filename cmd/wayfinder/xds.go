package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// xdsCommand is the program "wayfinder xds" runs, as git and kubectl run
// their plugins: the xDS control plane is a module of its own, so that
// this command does not build go-control-plane and the envoy protos.
const xdsCommand = "wayfinder-xds"

const xdsInstall = "go install github.com/wayfinder-rpc/wayfinder/xds/cmd/wayfinder-xds@latest"

// cmdXDS runs wayfinder-xds from PATH with args, and passes on SIGINT
// (as the context's end) so that it stops as it would on its own.
func cmdXDS(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		return helpRequested{fs: flags("xds")}
	}
	path, err := exec.LookPath(xdsCommand)
	if err != nil {
		return hintError{err: fmt.Errorf("%s is not installed (not found in PATH)", xdsCommand), hint: "install it with: " + xdsInstall}
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, out, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) && ctx.Err() == nil {
		// It said why on stderr.
		return fmt.Errorf("%s exited with status %d", xdsCommand, exit.ExitCode())
	}
	if ctx.Err() != nil {
		return nil // interrupted, as watch and register are
	}
	return err
}
