// Package leak checks a test binary for leaked goroutines, after closing
// what a program, too, would leave running until it exits (such as
// resolver.DefaultCache's lingering watches).
package leak

import (
	"testing"

	"go.uber.org/goleak"
)

// VerifyTestMain runs the tests, then closeFirst, then goleak's check,
// and exits non-zero if a test failed or a goroutine leaked.
//
// goleak.Cleanup is not a substitute: its function runs after the check
// and receives the exit code to exit with, so one that only closes
// things hides the leaks the check found.
func VerifyTestMain(m *testing.M, closeFirst func(), opts ...goleak.Option) {
	goleak.VerifyTestMain(runThen{m, closeFirst}, opts...)
}

type runThen struct {
	m    *testing.M
	then func()
}

func (r runThen) Run() int {
	code := r.m.Run()
	r.then()
	return code
}
