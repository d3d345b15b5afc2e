// Package standalone is the one stand-in for testing.TB outside a test
// function: in TestMain, to start a server shared by a package's tests,
// and in the benchmark harness, which runs testenv helpers outside `go
// test` and scopes the servers of one scenario run.
package standalone

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"testing"
)

// TB runs helpers that take a testing.TB where there is no *testing.T:
// Cleanup functions run, last first, at Close; Fatalf unwinds to Do, which
// returns it as an error, or, outside Do, panics with the message. The
// zero TB is ready to use: unnamed, with no logs and a background
// Context.
//
// testing.TB cannot be implemented outside package testing, so TB embeds
// a nil one and overrides every method testenv and this package call.
// Calling another method panics, which Do reports as the run's error.
type TB struct {
	testing.TB // always nil

	name   string
	log    io.Writer
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex // guards the fields below
	cleanups []func()
	failed   bool
	msgs     []string
}

var _ testing.TB = (*TB)(nil)

// fatal is the panic value of Fatalf, recovered by Do; outside Do, the
// runtime prints its Error.
type fatal struct{ msg string }

func (f fatal) Error() string { return f.msg }

// New returns a TB named name whose logs go to log (nil discards).
func New(name string, log io.Writer) *TB {
	ctx, cancel := context.WithCancel(context.Background())
	return &TB{name: name, log: log, ctx: ctx, cancel: cancel}
}

func (t *TB) Helper()      {}
func (t *TB) Name() string { return t.name }

func (t *TB) Context() context.Context {
	if t.ctx == nil {
		return context.Background()
	}
	return t.ctx
}

func (t *TB) Logf(format string, args ...any) {
	if t.log != nil {
		fmt.Fprintf(t.log, "%s: %s\n", t.name, fmt.Sprintf(format, args...))
	}
}

func (t *TB) Log(args ...any) { t.Logf("%s", fmt.Sprint(args...)) }

func (t *TB) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	t.mu.Lock()
	t.failed = true
	t.msgs = append(t.msgs, msg)
	t.mu.Unlock()
	t.Logf("%s", msg)
}

func (t *TB) Error(args ...any) { t.Errorf("%s", fmt.Sprint(args...)) }

// Fatalf records the failure and unwinds the calling goroutine to Do.
// Like testing's, it must be called from the goroutine running the
// scenario.
func (t *TB) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	panic(fatal{fmt.Sprintf(format, args...)})
}

func (t *TB) Fatal(args ...any) { t.Fatalf("%s", fmt.Sprint(args...)) }
func (t *TB) FailNow()          { t.Fatalf("FailNow") }
func (t *TB) Fail()             { t.mu.Lock(); t.failed = true; t.mu.Unlock() }

func (t *TB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *TB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *TB) TempDir() string {
	d, err := os.MkdirTemp("", "wayfinder-standalone-")
	if err != nil {
		t.Fatalf("standalone: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Close cancels Context and runs the cleanups, last first.
func (t *TB) Close() {
	if t.cancel != nil {
		t.cancel()
	}
	for {
		t.mu.Lock()
		n := len(t.cleanups)
		if n == 0 {
			t.mu.Unlock()
			return
		}
		f := t.cleanups[n-1]
		t.cleanups = t.cleanups[:n-1]
		t.mu.Unlock()
		f()
	}
}

// Do runs f with t and turns a Fatalf, or any other panic, into an error.
// It does not Close t.
func Do(t *TB, f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(fatal); ok {
				err = fmt.Errorf("%s: %s", t.name, f.msg)
				return
			}
			buf := make([]byte, 4<<10)
			buf = buf[:runtime.Stack(buf, false)]
			err = fmt.Errorf("%s: panic: %v\n%s", t.name, r, buf)
		}
	}()
	f()
	if t.Failed() {
		t.mu.Lock()
		defer t.mu.Unlock()
		return fmt.Errorf("%s: %v", t.name, t.msgs)
	}
	return nil
}
