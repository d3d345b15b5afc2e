package testenv

import (
	"fmt"
	"os"
	"sync"
)

// MainTB lets TestMain use the Consul helpers, to share one agent among
// all of a package's tests: Fatalf panics (failing the test binary), and
// Cleanup functions run, last first, when Close is called.
type MainTB struct {
	mu       sync.Mutex
	cleanups []func()
}

var _ TB = (*MainTB)(nil)

func (*MainTB) Helper() {}

func (*MainTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

func (m *MainTB) Cleanup(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cleanups = append(m.cleanups, f)
}

func (m *MainTB) TempDir() string {
	d, err := os.MkdirTemp("", "wayfinder-testenv-")
	if err != nil {
		m.Fatalf("testenv: %v", err)
	}
	m.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Close runs the cleanups.
func (m *MainTB) Close() {
	m.mu.Lock()
	cs := m.cleanups
	m.cleanups = nil
	m.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}
