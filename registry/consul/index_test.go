package consul_test

import (
	"errors"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

func indexOf(t *testing.T, w registry.Watcher) string {
	t.Helper()
	iw, ok := w.(registry.IndexedWatcher)
	if !ok {
		t.Fatalf("%T does not implement registry.IndexedWatcher", w)
	}
	return iw.Index()
}

// healthIndex is the X-Consul-Index of a plain read of svc's passing
// instances in dc through the agent at addr.
func healthIndex(t *testing.T, addr, dc, svc string) uint64 {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	_, meta, err := c.Health().Service(svc, "", true, &api.QueryOptions{Datacenter: dc})
	if err != nil {
		t.Fatalf("health query of %q in %q: %v", svc, dc, err)
	}
	return meta.LastIndex
}

// TestWatcherIndexIsConsulIndex: on a real agent, the watcher's index is
// the X-Consul-Index of the read that produced its set.
func TestWatcherIndexIsConsulIndex(t *testing.T) {
	server := newReg(t, shared.HTTPAddr())
	client := newReg(t, shared.HTTPAddr())
	svc := registrytest.ServiceName(t)
	w := mustWatch(t, client, svc)
	if got := indexOf(t, w); got != "" {
		t.Errorf("Index() before Next = %q, want \"\"", got)
	}
	nextUntil(t, w, 10*time.Second, "the empty set", func(in []registry.Instance) bool { return len(in) == 0 })
	empty, err := strconv.ParseUint(indexOf(t, w), 10, 64)
	if err != nil || empty == 0 {
		t.Fatalf("Index() of the first set = %q, want a Consul index", indexOf(t, w))
	}
	a := registrytest.MakeInstance(svc, 1)
	if err := server.Register(ctxT(t, 10*time.Second), a); err != nil {
		t.Fatal(err)
	}
	nextUntil(t, w, 10*time.Second, "a", func(in []registry.Instance) bool { return sameIDs(in, a.ID) })
	got := indexOf(t, w)
	if want := strconv.FormatUint(healthIndex(t, shared.HTTPAddr(), "", svc), 10); got != want {
		t.Errorf("Index() after a's registration = %q; a read of the service now has X-Consul-Index %s", got, want)
	}
	t.Logf("index of the empty set %d, with a %s", empty, got)
	if n, _ := strconv.ParseUint(got, 10, 64); n <= empty {
		t.Errorf("Index() went from %d to %q across a registration, want it to grow", empty, got)
	}
	if err := server.Deregister(ctxT(t, 10*time.Second), a); err != nil {
		t.Fatal(err)
	}
	nextUntil(t, w, 10*time.Second, "the empty set again", func(in []registry.Instance) bool { return len(in) == 0 })
	if n, err := strconv.ParseUint(indexOf(t, w), 10, 64); err != nil || strconv.FormatUint(n, 10) == got || n < empty {
		t.Errorf("Index() after the removal = %q, want a Consul index above %s", indexOf(t, w), got)
	}
}

// TestWatcherIndexPerDatacenter: with two real, WAN-joined datacenters
// the index names each datacenter's X-Consul-Index, and a change in one
// moves only that one.
func TestWatcherIndexPerDatacenter(t *testing.T) {
	dc1 := testenv.StartConsulWith(t, testenv.ConsulOptions{Datacenter: "dc1"})
	dc2 := testenv.StartConsulWith(t, testenv.ConsulOptions{Datacenter: "dc2"})
	c1, err := api.NewClient(&api.Config{Address: dc1.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	wanAddr := "127.0.0.1:" + strconv.Itoa(dc2.Ports.SerfWAN)
	if err := c1.Agent().Join(wanAddr, true); err != nil {
		t.Fatalf("WAN join of dc2 (%s): %v", wanAddr, err)
	}
	var dcs []string
	if !wait.Until(20*time.Second, func() bool {
		dcs, err = c1.Catalog().Datacenters()
		return err == nil && len(dcs) == 2
	}) {
		t.Fatalf("datacenters after the WAN join = %v, %v; want dc1 and dc2", dcs, err)
	}
	svc := registrytest.ServiceName(t)
	in1 := newReg(t, dc1.HTTPAddr())
	in2 := newReg(t, dc2.HTTPAddr())
	a, b, c := registrytest.MakeInstance(svc, 1), registrytest.MakeInstance(svc, 2), registrytest.MakeInstance(svc, 3)
	if err := in1.Register(ctxT(t, 10*time.Second), a); err != nil {
		t.Fatal(err)
	}
	if err := in2.Register(ctxT(t, 10*time.Second), b); err != nil {
		t.Fatal(err)
	}
	w := mustWatch(t, newReg(t, dc1.HTTPAddr(), consul.WithDatacenters("dc1", "dc2")), svc)
	shape := regexp.MustCompile(`^dc1=(\d+) dc2=(\d+)$`)
	nextUntil(t, w, 20*time.Second, "a and b", func(in []registry.Instance) bool { return sameIDs(in, a.ID, b.ID) })
	before := indexOf(t, w)
	m := shape.FindStringSubmatch(before)
	if m == nil {
		t.Fatalf("Index() = %q, want dc1=<index> dc2=<index>", before)
	}
	for i, dc := range []string{"dc1", "dc2"} {
		if want := strconv.FormatUint(healthIndex(t, dc1.HTTPAddr(), dc, svc), 10); m[i+1] != want {
			t.Errorf("Index() = %q: %s's is %s, but a read of %s now has X-Consul-Index %s", before, dc, m[i+1], dc, want)
		}
	}
	if err := in2.Register(ctxT(t, 10*time.Second), c); err != nil {
		t.Fatal(err)
	}
	nextUntil(t, w, 20*time.Second, "a, b and c", func(in []registry.Instance) bool { return sameIDs(in, a.ID, b.ID, c.ID) })
	t.Logf("index before %q, after a registration in dc2 %q", before, indexOf(t, w))
	after := shape.FindStringSubmatch(indexOf(t, w))
	if after == nil || after[1] != m[1] || after[2] == m[2] {
		t.Errorf("Index() = %q before and %q after a registration in dc2; want dc2's alone to move", before, indexOf(t, w))
	}
}

// TestWatcherIndexSkipsSilentDatacenter: a datacenter that has never
// answered is left out of the index, and an error keeps the index of the
// last set.
func TestWatcherIndexSkipsSilentDatacenter(t *testing.T) {
	f := newFake(t, func(_ int, dc string) answer {
		if dc == "dc2" {
			return answer{status: 500}
		}
		return answer{ids: []string{"a"}, index: 1000, hold: time.Hour}
	})
	w := mustWatch(t, fakeReg(t, f, consul.WithDatacenters("dc1", "dc2")), "svc")
	ctx := ctxT(t, 10*time.Second)
	for {
		got, err := w.Next(ctx)
		if err == nil {
			if !sameIDs(got, "a") {
				t.Fatalf("Next() = %v, want a", ids(got))
			}
			break
		}
		if !errors.Is(err, registry.ErrUnavailable) {
			t.Fatalf("Next() = %v, want dc2's ErrUnavailable or dc1's set", err)
		}
		if got := indexOf(t, w); got != "" {
			t.Errorf("Index() after only an error = %q, want \"\"", got)
		}
	}
	if got := indexOf(t, w); got != "dc1=1000" {
		t.Errorf("Index() = %q, want dc1=1000 (dc2 never answered)", got)
	}
}
