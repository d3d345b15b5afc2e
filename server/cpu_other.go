//go:build !unix

package server

import "time"

// processCPU cannot measure the process's CPU time on this platform:
// load reports then carry no CPU utilisation.
func processCPU() (time.Duration, bool) { return 0, false }
