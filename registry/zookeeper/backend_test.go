package zookeeper_test

import (
	"encoding/json"
	"errors"
	"path"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
	"github.com/wayfinder-rpc/wayfinder/registry/zookeeper"
	"github.com/wayfinder-rpc/wayfinder/registry/zookeeper/internal/zk"
)

// rawConn is a plain go-zookeeper client, as another framework uses.
func rawConn(t *testing.T, addr string) *zk.Conn {
	t.Helper()
	c, events, err := zk.Connect([]string{addr}, 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(discard{}))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	timeout := time.After(20 * time.Second)
	for live := false; !live; {
		select {
		case ev := <-events:
			live = ev.State == zk.StateHasSession
		case <-timeout:
			close(done)
			t.Fatalf("no session with %s within 20s", addr)
		}
	}
	go func() {
		for range events {
		}
		close(done)
	}()
	return c
}

type discard struct{}

func (discard) Printf(string, ...any) {}

// kratosInstance is Kratos's registry.ServiceInstance, as its ZooKeeper
// registry (contrib/registry/zookeeper) marshals it with encoding/json.
type kratosInstance struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Version   string            `json:"version"`
	Metadata  map[string]string `json:"metadata"`
	Endpoints []string          `json:"endpoints"`
}

// createKratos writes a node the way Kratos's registry does: persistent
// /microservices and /microservices/<name>, then the ephemeral
// /microservices/<name>/<id> with the JSON of the instance, world ACL.
func createKratos(t *testing.T, c *zk.Conn, si kratosInstance) {
	t.Helper()
	data, err := json.Marshal(si)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/microservices", path.Join("/microservices", si.Name)} {
		if _, err := c.Create(p, []byte(""), 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			t.Fatal(err)
		}
	}
	if _, err := c.Create(path.Join("/microservices", si.Name, si.ID), data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
}

// TestReadsKratosLayout: a Wayfinder client with root /microservices
// finds the services Kratos's ZooKeeper registry registers, with the
// grpc:// endpoint as the address (the http:// one and the isSecure
// query ignored), the version, the metadata and its weight; follows
// them in a watch; and skips a node that is not an instance without
// hiding the others.
func TestReadsKratosLayout(t *testing.T) {
	srv := testenv.StartZooKeeper(t)
	kratos := rawConn(t, srv.Addr())
	svc := registrytest.ServiceName(t)
	createKratos(t, kratos, kratosInstance{
		ID: "k1", Name: svc, Version: "v1.2.0",
		Metadata:  map[string]string{"weight": "30", "region": "eu"},
		Endpoints: []string{"http://127.0.0.1:8000", "grpc://127.0.0.1:9000?isSecure=false"},
	})
	r := newRegistry(t, []string{srv.Addr()}, zookeeper.WithRoot("/microservices"))
	got, err := r.Lookup(ctxFor(t, 10*time.Second), svc)
	if err != nil {
		t.Fatal(err)
	}
	want := registry.Instance{ID: "k1", Service: svc, Address: "127.0.0.1:9000", Version: "v1.2.0", Weight: 30,
		Metadata: map[string]string{"weight": "30", "region": "eu"}}
	if len(got) != 1 || !got[0].Equal(want) {
		t.Fatalf("Lookup(%q) = %+v, want [%+v]", svc, got, want)
	}
	w, err := r.Watch(ctxFor(t, 10*time.Second), svc)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if set, err := w.Next(ctxFor(t, 10*time.Second)); err != nil || len(set) != 1 {
		t.Fatalf("first Next = %v, %v; want k1", set, err)
	}
	// A second Kratos instance, and a node that is no instance at all.
	createKratos(t, kratos, kratosInstance{ID: "k2", Name: svc, Endpoints: []string{"grpc://127.0.0.1:9001"}})
	if _, err := kratos.Create(path.Join("/microservices", svc, "junk"), []byte("not json"), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 20*time.Second)
	for {
		set, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("Next = %v, want k1 and k2", err)
		}
		if registrytest.SameIDs(set, want, registry.Instance{ID: "k2"}) || len(set) == 2 && set[1].Address == "127.0.0.1:9001" {
			break
		}
	}
	wait.For(t, 10*time.Second, "the junk node counted as skipped", func() bool { return r.Stats().SkippedValues > 0 })
}

// TestKratosReadsWayfinder: the node Wayfinder writes is a Kratos
// ServiceInstance too, so Kratos clients can call Wayfinder services
// during a migration.
func TestKratosReadsWayfinder(t *testing.T) {
	srv := testenv.StartZooKeeper(t)
	r := newRegistry(t, []string{srv.Addr()}, zookeeper.WithRoot("/microservices"))
	inst := registrytest.MakeInstance(registrytest.ServiceName(t), 1)
	inst.Version = "v2"
	if err := r.Register(ctxFor(t, 10*time.Second), inst); err != nil {
		t.Fatal(err)
	}
	data, _, err := rawConn(t, srv.Addr()).Get(path.Join("/microservices", inst.Service, inst.ID))
	if err != nil {
		t.Fatal(err)
	}
	var si kratosInstance
	if err := json.Unmarshal(data, &si); err != nil {
		t.Fatal(err)
	}
	if si.ID != inst.ID || si.Name != inst.Service || si.Version != "v2" || len(si.Endpoints) != 1 || si.Endpoints[0] != "grpc://"+inst.Address {
		t.Fatalf("node as Kratos reads it = %+v, want id %s, name %s, version v2, endpoints [grpc://%s]", si, inst.ID, inst.Service, inst.Address)
	}
}

// TestSessionExpiry: cut off for longer than its session timeout, a
// client loses its session and ZooKeeper deletes its node; Status says
// so (retrying), and once the client is back the keeper writes the node
// again under the new session (a second registration), and a watcher
// outside sees it come back.
func TestSessionExpiry(t *testing.T) {
	srv := testenv.StartZooKeeper(t)
	proxy := registrytest.NewProxy(t, srv.Addr())
	const session = time.Second
	r := newRegistry(t, []string{proxy.Addr()}, zookeeper.WithSessionTimeout(session), zookeeper.WithTimeout(2*time.Second))
	outside := newRegistry(t, []string{srv.Addr()})
	a := registrytest.MakeInstance(registrytest.ServiceName(t), 1)
	if err := r.Register(ctxFor(t, 10*time.Second), a); err != nil {
		t.Fatal(err)
	}
	if s := r.Status(a); s.State != registry.StateRegistered || s.Registrations != 1 {
		t.Fatalf("Status after Register = %+v, want registered once", s)
	}
	first := r.Conn().SessionID()
	proxy.Cut()
	wait.For(t, 30*time.Second, "the node deleted by the session's expiry", func() bool {
		got, err := outside.Lookup(ctxFor(t, 5*time.Second), a.Service)
		return err == nil && len(got) == 0
	})
	wait.For(t, 10*time.Second, "Status retrying", func() bool {
		s := r.Status(a)
		return s.State == registry.StateRetrying && s.Err != nil
	})
	proxy.Restore()
	wait.For(t, 30*time.Second, "registered again under a new session", func() bool {
		s := r.Status(a)
		return s.State == registry.StateRegistered && s.Registrations >= 2
	})
	if r.Conn().SessionID() == first {
		t.Fatalf("SessionID() = %x after the expiry, the same as before", first)
	}
	wait.For(t, 10*time.Second, "the node back for an outside reader", func() bool {
		got, err := outside.Lookup(ctxFor(t, 5*time.Second), a.Service)
		return err == nil && registrytest.SameIDs(got, a)
	})
}

// TestForeignDeleteRewritten: a node deleted by someone else (an
// operator, a cleanup script) is written again by its Registry.
func TestForeignDeleteRewritten(t *testing.T) {
	srv := testenv.StartZooKeeper(t)
	r := newRegistry(t, []string{srv.Addr()})
	a := registrytest.MakeInstance(registrytest.ServiceName(t), 1)
	if err := r.Register(ctxFor(t, 10*time.Second), a); err != nil {
		t.Fatal(err)
	}
	if err := rawConn(t, srv.Addr()).Delete(path.Join(zookeeper.DefaultRoot, a.Service, a.ID), -1); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "the node written again", func() bool {
		return r.Stats().Rewrites == 1 && r.Status(a).State == registry.StateRegistered && r.Status(a).Registrations == 2
	})
	got, err := r.Lookup(ctxFor(t, 5*time.Second), a.Service)
	if err != nil || !registrytest.SameIDs(got, a) {
		t.Fatalf("Lookup = %v, %v; want a", got, err)
	}
}

// TestDigestACL: a Registry with digest credentials creates nodes that
// others may read but not change; one with other credentials cannot
// register under them and says it is a permission problem.
func TestDigestACL(t *testing.T) {
	srv := testenv.StartZooKeeper(t)
	root := zookeeper.WithRoot("/acl-" + registrytest.ServiceName(t))
	owner := newRegistry(t, []string{srv.Addr()}, root, zookeeper.WithDigestAuth("alice", "pw-a"))
	svc := "hello"
	a := registrytest.MakeInstance(svc, 1)
	if err := owner.Register(ctxFor(t, 10*time.Second), a); err != nil {
		t.Fatal(err)
	}
	reader := newRegistry(t, []string{srv.Addr()}, root)
	if got, err := reader.Lookup(ctxFor(t, 5*time.Second), svc); err != nil || !registrytest.SameIDs(got, a) {
		t.Fatalf("Lookup without credentials = %v, %v; want a (world may read)", got, err)
	}
	other := newRegistry(t, []string{srv.Addr()}, root, zookeeper.WithDigestAuth("mallory", "pw-m"))
	err := other.Register(ctxFor(t, 10*time.Second), registrytest.MakeInstance(svc, 2))
	if !errors.Is(err, registry.ErrPermissionDenied) || !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Register with other credentials = %v, want ErrPermissionDenied and ErrUnavailable", err)
	}
	if err := other.Deregister(ctxFor(t, 10*time.Second), a); !errors.Is(err, registry.ErrPermissionDenied) {
		t.Fatalf("Deregister of alice's node by mallory = %v, want ErrPermissionDenied", err)
	}
}
