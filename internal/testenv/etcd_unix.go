//go:build unix

package testenv

import (
	"os/exec"
	"syscall"
)

func signalStop(cmd *exec.Cmd) error { return cmd.Process.Signal(syscall.SIGSTOP) }

func signalCont(cmd *exec.Cmd) { _ = cmd.Process.Signal(syscall.SIGCONT) }
