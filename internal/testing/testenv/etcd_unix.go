//go:build unix

package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// signalStop stops the process and, where /proc exists, waits until every
// thread is really stopped: SIGSTOP is delivered asynchronously, and a
// thread still in a system call can finish a write after kill returns,
// which made "frozen" servers answer one last request.
func signalStop(cmd *exec.Cmd) error {
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	tasks := fmt.Sprintf("/proc/%d/task", cmd.Process.Pid)
	if _, err := os.Stat(tasks); err != nil {
		return nil // no /proc: best effort
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if allStopped(tasks) {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("process %d not stopped 5s after SIGSTOP", cmd.Process.Pid)
}

func allStopped(tasks string) bool {
	stats, _ := filepath.Glob(filepath.Join(tasks, "*", "stat"))
	if len(stats) == 0 {
		return false
	}
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			return false
		}
		// The state follows the command name in parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) || (s[i+2] != 'T' && s[i+2] != 't') {
			return false
		}
	}
	return true
}

func signalCont(cmd *exec.Cmd) { _ = cmd.Process.Signal(syscall.SIGCONT) }
