package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/cctest"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

func TestMain(m *testing.M) {
	// The registrant-pause test re-executes this binary as the process it
	// freezes; see registrant_test.go.
	if os.Getenv(registrantEnv) != "" {
		os.Exit(runRegistrant())
	}
	goleak.VerifyTestMain(m)
}

// harness gives the suite clients of a real etcd through a proxy, whose
// cut is the outage (a partition, with the member and its leases left as
// they were, and, to the clients, a refusal: registrytest.Refuser) and
// whose freeze is a member that accepts connections and never answers
// (registrytest.Freezer).
type harness struct {
	srv   *testenv.EtcdMember
	proxy *registrytest.Proxy
}

// frozenBound is the harness clients' timeout and liveness bound: the
// longest a call without a deadline, or a watch, waits for a frozen etcd.
const frozenBound = 2 * time.Second

func (h harness) NewRegistry(t *testing.T) registry.Registry {
	return newRegistry(t, []string{h.proxy.Addr()}, etcd.WithTimeout(frozenBound), etcd.WithUnavailableAfter(frozenBound))
}

func (h harness) Freeze(*testing.T) func() {
	h.proxy.Freeze()
	return h.proxy.Thaw
}

func (h harness) Refuse(*testing.T) func() {
	h.proxy.Cut()
	return h.proxy.Restore
}

func (h harness) FrozenBound() time.Duration { return frozenBound }

func (h harness) Addr() string { return "etcd://" + h.proxy.Addr() }

func (h harness) NewOutsideRegistry(t *testing.T) registry.Registry {
	return newRegistry(t, []string{h.srv.Endpoint()})
}

func (h harness) Outage(*testing.T) func() {
	h.proxy.Cut()
	return h.proxy.Restore
}

// Stall freezes the member with SIGSTOP (registrytest.Staller).
func (h harness) Stall(t *testing.T) func() {
	h.srv.Pause(t)
	return func() { h.srv.Resume(t) }
}

func TestConformance(t *testing.T) {
	srv := testenv.StartEtcd(t)
	registrytest.RunConformanceTests(t, harness{srv, registrytest.NewProxy(t, srv.Endpoint())}, registrytest.RequireOptional())
}

// newRegistry opens a Registry closed with the test.
func newRegistry(t testing.TB, endpoints []string, opts ...etcd.Option) *etcd.Registry {
	t.Helper()
	r, err := etcd.New(endpoints, opts...)
	if err != nil {
		t.Fatalf("etcd.New(%v) = %v", endpoints, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func inst(svc string, n int) registry.Instance {
	return registrytest.MakeInstance(svc, n)
}

func ids(insts []registry.Instance) []string { return registrytest.IDs(insts) }

func sameIDs(got []registry.Instance, want ...registry.Instance) bool {
	return registrytest.SameIDs(got, want...)
}

// result is one return of Watcher.Next.
type result struct {
	at  time.Time
	set []registry.Instance
	err error
}

// follow calls Next in a goroutine until the watcher closes, sending every
// result. It returns a function that stops it and waits.
func follow(t testing.TB, w registry.Watcher) <-chan result {
	t.Helper()
	ch := make(chan result, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			set, err := w.Next(context.Background())
			if errors.Is(err, registry.ErrClosed) {
				return
			}
			ch <- result{time.Now(), set, err}
		}
	}()
	t.Cleanup(func() {
		w.Close()
		<-done
	})
	return ch
}

// await reads results until one satisfies cond, failing after d. It
// returns that result and the errors seen before it.
func await(t testing.TB, ch <-chan result, d time.Duration, what string, cond func([]registry.Instance) bool) (result, []error) {
	t.Helper()
	deadline := time.After(d)
	var errs []error
	var last []registry.Instance
	for {
		select {
		case r := <-ch:
			if r.err != nil {
				if len(r.set) != 0 {
					t.Errorf("Next() = %v, %v: an error must not come with a set", ids(r.set), r.err)
				}
				errs = append(errs, r.err)
				continue
			}
			if cond(r.set) {
				return r, errs
			}
			last = r.set
		case <-deadline:
			t.Fatalf("watcher never showed %s within %v; last set %v, errors %v", what, d, ids(last), errs)
		}
	}
}

func has(want ...registry.Instance) func([]registry.Instance) bool {
	return func(got []registry.Instance) bool { return sameIDs(got, want...) }
}

func svcName(t testing.TB) string {
	return strings.ToLower(fmt.Sprintf("s%x-%s", time.Now().UnixNano()&0xffffff, strings.Map(func(r rune) rune {
		if ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			return r
		}
		return '-'
	}, t.Name())))
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// logRecorder collects log output for assertions.
type logRecorder struct{ cctest.SyncBuffer }

func (l *logRecorder) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func (l *logRecorder) mentions(key string) bool {
	return strings.Contains(l.String(), fmt.Sprintf("key=%q", key)) || strings.Contains(l.String(), "key="+key+" ")
}
