package testenv

import (
	"os/exec"
	"syscall"
)

// setPdeathsig kills the server if the test binary dies without running
// its cleanups (a panic in another goroutine, a timeout), so no etcd is
// left behind holding ports.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
