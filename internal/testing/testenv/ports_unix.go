//go:build unix

package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// reservations holds, for the life of the process, a lock on a file per
// port FreePort handed out, so that no other test process on the
// machine hands out the same port. A port being free is not enough: a
// server killed to test a restart leaves its ports free until Restart
// binds them again, and another package's test (go test runs packages in
// parallel) could take one in between ("bind: address already in use";
// registry/etcd TestStatus failed so once in a -count=20 run beside
// other test processes). The kernel drops the locks when the process
// exits, however it exits.
var reservations struct {
	sync.Mutex
	files []*os.File
}

// reservePort reports whether this process now holds port's lock; false
// if another live process does.
func reservePort(port int) bool {
	dir := filepath.Join(os.TempDir(), "wayfinder-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return true // no shared directory: fall back to the bind check alone
	}
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	reservations.Lock()
	reservations.files = append(reservations.files, f)
	reservations.Unlock()
	return true
}
