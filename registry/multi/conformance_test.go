package multi_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/registry/multi"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// etcdBound is the harness's etcd members' timeout and liveness bound.
const etcdBound = 2 * time.Second

// consulTimeout bounds the harness's Consul members' calls: the watch's
// default liveness bound rather than the calls' default 5s, because the
// suite registers 1000 instances in an agent that shares two cores with
// other test runs, and on a loaded machine (load average 20) an agent
// has missed 5s for one registration of the thousand. The frozen cases'
// bound, the longer of the two, is unchanged.
const consulTimeout = consul.DefaultUnavailableAfter

// consulBound is the longest a call or a watch of the harness's Consul
// members waits for a frozen agent.
var consulBound = max(consulTimeout, consul.DefaultUnavailableAfter)

// testMux opens the harness's URLs: etcd members with the short bounds
// above, Consul members with consulTimeout, and multi, whose members
// it opens (which TestConformance thereby checks: with DefaultURLMux's
// etcd opener, the frozen cases would wait etcd's default bound).
func testMux() *registry.URLMux {
	m := new(registry.URLMux)
	m.RegisterScheme(etcd.Scheme, &etcd.URLOpener{Options: []etcd.Option{etcd.WithTimeout(etcdBound), etcd.WithUnavailableAfter(etcdBound)}})
	m.RegisterScheme(consul.Scheme, &consul.URLOpener{Options: []consul.Option{consul.WithTimeout(consulTimeout)}})
	m.RegisterScheme(multi.Scheme, &multi.URLOpener{})
	return m
}

// harness gives the suite multi registries reading and writing a real
// etcd and a real Consul agent, each through a proxy. Its outages cut
// one member, cut, and leave the other alone.
//
// Its freeze freezes both members: with one member frozen, a Register
// made during the freeze reaches the other, whose watch shows it, and
// the suite's frozen case rightly wants a single registry's watch to
// show no new set while frozen. TestOneMemberFrozen covers one frozen
// member.
type harness struct {
	mux                 *registry.URLMux
	etcdDirect, etcdVia string // host:port
	conDirect, conVia   string
	etcdProxy, conProxy *registrytest.Proxy
	cut                 *registrytest.Proxy
}

// refusing is a harness whose cut member, etcd, says "refused" when its
// proxy cuts it (registrytest.Refuser). Consul's client reads a cut
// proxy as a closed connection, not a refusal, as Consul's own suite
// knows (its harness is no Refuser).
type refusing struct{ harness }

func (h refusing) Refuse(*testing.T) func() {
	h.cut.Cut()
	return h.cut.Restore
}

var _ registrytest.Refuser = refusing{}

func multiURL(etcdAddr, consulAddr string) string {
	m := "etcd://" + etcdAddr + ",consul://" + consulAddr
	return "multi://?read=" + m + "&write=" + m
}

func (h harness) open(t *testing.T, raw string) registry.Registry {
	t.Helper()
	r, err := h.mux.Open(t.Context(), raw)
	if err != nil {
		t.Fatalf("Open(%q) = %v", raw, err)
	}
	return r
}

func (h harness) NewRegistry(t *testing.T) registry.Registry {
	return h.open(t, multiURL(h.etcdVia, h.conVia))
}

func (h harness) NewOutsideRegistry(t *testing.T) registry.Registry {
	return h.open(t, multiURL(h.etcdDirect, h.conDirect))
}

func (h harness) Outage(*testing.T) func() {
	h.cut.Cut()
	return h.cut.Restore
}

func (h harness) Freeze(*testing.T) func() {
	h.etcdProxy.Freeze()
	h.conProxy.Freeze()
	return func() {
		h.etcdProxy.Thaw()
		h.conProxy.Thaw()
	}
}

// FrozenBound is the longer of the members' bounds.
func (h harness) FrozenBound() time.Duration { return max(etcdBound, consulBound) }

// Addr names the member whose errors come first when both fail: etcd,
// listed first; a refusal, which only etcd's run makes, cuts etcd.
func (h harness) Addr() string { return "etcd://" + h.etcdVia }

// TestConformance runs the suite on multi over etcd and Consul, twice:
// with each member's outage in turn (the suite's outages, and in etcd's
// run its refusals, cut that member alone, and the other keeps
// answering; its freezes freeze both, see harness).
//
// Each run has servers of its own, so that the second does not start
// with an agent still busy with the first's thousand registrations.
func TestConformance(t *testing.T) {
	servers := func(t *testing.T) harness {
		e := testenv.StartEtcd(t)
		c := testenv.StartConsul(t)
		ep, cp := registrytest.NewProxy(t, e.Endpoint()), registrytest.NewProxy(t, c.HTTPAddr())
		return harness{mux: testMux(), etcdDirect: e.Endpoint(), etcdVia: ep.Addr(), conDirect: c.HTTPAddr(), conVia: cp.Addr(), etcdProxy: ep, conProxy: cp}
	}
	t.Run("EtcdOutages", func(t *testing.T) {
		h := servers(t)
		h.cut = h.etcdProxy
		registrytest.RunConformanceTests(t, refusing{h}, registrytest.RequireOptional())
	})
	t.Run("ConsulOutages", func(t *testing.T) {
		h := servers(t)
		h.cut = h.conProxy
		registrytest.RunConformanceTests(t, h, registrytest.RequireOptional())
	})
}

// TestOneMemberFrozen: with etcd frozen and Consul answering, Register
// writes to Consul at once, before etcd's bound ends its call with
// etcd's "no answer"; the watch shows Consul's change and reports etcd's
// outage, keeping etcd's instances; after the thaw the background retry
// writes etcd, and Status says so.
func TestOneMemberFrozen(t *testing.T) {
	e := testenv.StartEtcd(t)
	c := testenv.StartConsul(t)
	ep := registrytest.NewProxy(t, e.Endpoint())
	r, err := testMux().Open(t.Context(), multiURL(ep.Addr(), c.HTTPAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	con, err := consul.New(c.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	et, err := etcd.New([]string{e.Endpoint()})
	if err != nil {
		t.Fatal(err)
	}
	defer et.Close()
	ctx := ctxT(t)
	svc := registrytest.ServiceName(t)
	a, b := registrytest.MakeInstance(svc, 1), registrytest.MakeInstance(svc, 2)
	if err := r.Register(ctx, a); err != nil {
		t.Fatalf("Register(a) = %v", err)
	}
	w, err := r.Watch(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if !wait.Until(20*time.Second, func() bool { got, err := w.Next(ctx); return err == nil && registrytest.SameIDs(got, a) }) {
		t.Fatal("the watch never showed a")
	}

	ep.Freeze()
	defer ep.Thaw()
	type result struct {
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		err := r.Register(context.Background(), b)
		done <- result{err, time.Since(start)}
	}()
	// Consul holds b while the call still waits for etcd.
	if !wait.Until(20*time.Second, func() bool {
		got, err := con.Lookup(ctx, svc)
		return err == nil && registrytest.SameIDs(got, a, b)
	}) {
		t.Fatal("Consul never got b while etcd was frozen")
	}
	select {
	case res := <-done:
		t.Fatalf("Register(b) returned (%v after %v) before Consul was seen holding b; want Consul written first", res.err, res.took)
	default:
	}
	res := <-done
	var ue *registry.UnavailableError
	if !errors.As(res.err, &ue) || ue.Cause != registry.CauseNoAnswer || ue.Registry != "etcd://"+ep.Addr() {
		t.Fatalf("Register(b) with etcd frozen = %v; want etcd's no-answer error", res.err)
	}
	if limit := etcdBound + 3*time.Second; res.took > limit {
		t.Errorf("Register(b) with etcd frozen took %v; want at most etcd's bound %v (+ slack)", res.took, etcdBound)
	}
	if st := r.(*multi.Registry).Status(b); st.State == registry.StateRegistered {
		t.Errorf("Status(b) with etcd frozen = %+v; want not registered", st)
	}
	// The watch: Consul's b, and etcd's outage; never without a.
	sawB, sawErr := false, false
	for !(sawB && sawErr) {
		got, err := w.Next(ctx)
		switch {
		case ctx.Err() != nil:
			t.Fatalf("the watch showed b: %v, etcd's outage: %v, before the deadline; want both", sawB, sawErr)
		case err != nil:
			if !errors.Is(err, registry.ErrUnavailable) {
				t.Fatalf("Next() = %v; want ErrUnavailable", err)
			}
			sawErr = true
		case registrytest.SameIDs(got, a, b):
			sawB = true
		case !registrytest.SameIDs(got, a):
			t.Fatalf("Next() with etcd frozen = %v; want [a] or [a b]", registrytest.IDs(got))
		}
	}

	ep.Thaw()
	if !wait.Until(30*time.Second, func() bool { return r.(*multi.Registry).Status(b).State == registry.StateRegistered }) {
		t.Fatalf("Status(b) after the thaw = %+v; want registered", r.(*multi.Registry).Status(b))
	}
	if got, err := et.Lookup(ctx, svc); err != nil || !registrytest.SameIDs(got, a, b) {
		t.Fatalf("etcd Lookup after the thaw = %v, %v; want [a b]", registrytest.IDs(got), err)
	}
}

// TestMemberQueries: a member URL's second parameter, %-encoded, stays
// the member's (Consul reads it: a bad value fails), and a comma inside
// a member (Consul's dc list, etcd's endpoints) stays in it.
func TestMemberQueries(t *testing.T) {
	good := "multi://?read=consul://127.0.0.1:8500?dc=dc1,dc2%26tag=v2,etcd://127.0.0.1:2379,127.0.0.1:2380"
	if err := registry.ValidateURL(good); err != nil {
		t.Errorf("ValidateURL(%q) = %v, want nil", good, err)
	}
	bad := "multi://?read=consul://127.0.0.1:8500?dc=dc1%26wait=never"
	if err := registry.ValidateURL(bad); !errors.Is(err, registry.ErrInvalidURL) || !strings.Contains(err.Error(), "wait") {
		t.Errorf("ValidateURL(%q) = %v; want Consul's error about wait", bad, err)
	}
	leak := "multi://?read=consul://127.0.0.1:8500?dc=dc1&wait=5s"
	if err := registry.ValidateURL(leak); !errors.Is(err, registry.ErrInvalidURL) || !strings.Contains(err.Error(), `parameter "wait" is not multi's`) {
		t.Errorf("ValidateURL(%q) = %v; want the leak named", leak, err)
	}
}
