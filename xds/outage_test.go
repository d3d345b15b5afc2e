package xds_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// outageLength is how long TestOutage30s holds the registry down, by the
// clock: the figure issue 21 promises ("a registry outage of 30 s costs
// 0 failed calls").
const outageLength = 30 * time.Second

// TestOutage30s: a registry that is down for 30 seconds by the clock
// costs no call to clients of any language, which keep calling every
// instance they had all along; the xDS server sees the outage, the
// registry still fails a Lookup at its end, and once the registry is
// back a Register reaches every client. Once on the memory registry (an
// outage of the store the xDS server reads) and once on a real etcd cut
// off from the xDS server (a proxy resets its connections and every new
// one).
func TestOutage30s(t *testing.T) {
	t.Run("mem", func(t *testing.T) {
		store := memory.NewStore()
		reg := store.Open()
		t.Cleanup(func() { reg.Close() })
		xreg := store.Open()
		t.Cleanup(func() { xreg.Close() })
		outage30s(t, reg, xreg,
			func() { xreg.SetOutage(errors.New("partition")) },
			func() { xreg.SetOutage(nil) })
	})
	t.Run("etcd", func(t *testing.T) {
		member := testenv.StartEtcd(t)
		proxy := registrytest.NewProxy(t, member.Endpoint())
		reg := openRegistry(t, "etcd://"+member.Endpoint())
		xreg := openRegistry(t, "etcd://"+proxy.Addr())
		outage30s(t, reg, xreg, proxy.Cut, proxy.Restore)
	})
}

// outage30s runs TestOutage30s on a registry: servers register in reg,
// the xDS server reads xreg, down between down() and up().
func outage30s(t *testing.T, reg registry.Registrar, xreg registry.Discovery, down, up func()) {
	startHello(t, reg, "a")
	startHello(t, reg, "b")
	srv, addr, _ := startXDS(t, xreg, "127.0.0.1:0")
	clients := []*client{startClient(t, "go", addr), startPython(t, "python", addr), startNode(t, "node", addr)}
	for _, c := range clients {
		c.waitPicks(t, 0, "a", "b")
	}

	marks := make([]int, len(clients))
	failed := make([]int, len(clients))
	for i, c := range clients {
		marks[i], failed[i] = c.calls(), len(c.failures())
	}
	outagesBefore := srv.Stats().Outages
	start := time.Now()
	down()
	wait.For(t, outageLength, "the xDS server to see the registry down", func() bool { return srv.Stats().Outages > outagesBefore })
	t.Logf("the xDS server saw the registry down after %v", time.Since(start).Round(time.Millisecond))
	// The outage itself is what is under test: it lasts its full length
	// by the clock, calls going on all the while.
	end := time.NewTimer(time.Until(start.Add(outageLength)))
	<-end.C
	held := time.Since(start)
	n := make([]int, len(clients))
	for i, c := range clients {
		n[i] = c.calls() - marks[i]
	}
	// Still down at its end, as the xDS server reads it.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	_, err := xreg.Lookup(ctx, "hello")
	cancel()
	up()
	if !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("Lookup through the xDS server's registry at the end of the outage = %v, want an error wrapping registry.ErrUnavailable", err)
	}

	for i, c := range clients {
		picks := c.picksSince(marks[i])[:n[i]]
		fails := c.failures()[failed[i]:]
		t.Logf("%s: %d calls, %d failed, during %.1f s with the registry down (%v)", c.name, n[i], len(fails), held.Seconds(), counts(picks))
		if len(fails) > 0 {
			t.Errorf("%s: %d calls failed during the outage, the first: %s", c.name, len(fails), fails[0])
		}
		if by := counts(picks); by["a"] == 0 || by["b"] == 0 {
			t.Errorf("%s: calls during the outage reached %v, want both a and b", c.name, by)
		}
	}

	// Once it is back, changes flow again.
	for i, c := range clients {
		marks[i] = c.calls()
	}
	startHello(t, reg, "c")
	for i, c := range clients {
		c.waitPicks(t, marks[i], "a", "b", "c")
	}
}
