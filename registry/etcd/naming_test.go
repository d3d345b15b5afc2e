package etcd_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	etcdresolver "go.etcd.io/etcd/client/v3/naming/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// sayHello calls SayHello on conn and returns the answering server's name.
func sayHello(t testing.TB, conn *grpc.ClientConn) string {
	t.Helper()
	resp, err := hellopb.NewHelloServiceClient(conn).SayHello(ctxFor(t, 10*time.Second), &hellopb.HelloRequest{Name: "interop"}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("SayHello() = %v", err)
	}
	m := resp.GetMessage()
	return m[strings.LastIndex(m, " ")+1:]
}

// TestNamingEntriesDiscovered: services registered with etcd's own
// endpoints.Manager, under the key layouts etcd naming targets use, are
// instances to Wayfinder, by Lookup, Watch and a real ClientConn.
func TestNamingEntriesDiscovered(t *testing.T) {
	srv := testenv.StartEtcd(t)
	cli := testenv.NewEtcdClient(t, nil, srv.Endpoint())
	svc := svcName(t)
	for _, tc := range []struct {
		name, prefix string // the etcd naming target is prefix/svc
	}{
		{"relative", "naming/team-a"},
		{"single segment", ""},
		{"absolute", "/naming/abs"},
		{"root", "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.prefix + "/" + svc
			switch tc.prefix {
			case "":
				target = svc
			case "/":
				target = "/" + svc
			}
			em, err := endpoints.NewManager(cli, target)
			if err != nil {
				t.Fatal(err)
			}
			one, two := testenv.StartHello(t, "one"), testenv.StartHello(t, "two")
			lease, err := cli.Grant(ctxFor(t, 5*time.Second), 30)
			if err != nil {
				t.Fatal(err)
			}
			// Foreign Metadata of any shape is not Wayfinder's: ignored.
			if err := em.AddEndpoint(ctxFor(t, 5*time.Second), target+"/one", endpoints.Endpoint{Addr: one.Addr, Metadata: "opaque"}, clientv3.WithLease(lease.ID)); err != nil {
				t.Fatal(err)
			}
			r := newRegistry(t, []string{srv.Endpoint()}, etcd.WithPrefix(tc.prefix))
			got, err := r.Lookup(ctxFor(t, 5*time.Second), svc)
			if err != nil || len(got) != 1 || got[0].ID != "one" || got[0].Address != one.Addr || got[0].Service != svc {
				t.Fatalf("Lookup(%q) under prefix %q = %v, %v; want one instance one@%s", svc, tc.prefix, got, err, one.Addr)
			}
			if names, err := r.Services(ctxFor(t, 5*time.Second)); err != nil || !contains(strings.Join(names, ","), svc) {
				t.Errorf("Services() = %v, %v; want it to list %q", names, err, svc)
			}
			w, err := r.Watch(ctxFor(t, time.Second), svc)
			if err != nil {
				t.Fatal(err)
			}
			results := follow(t, w)
			await(t, results, 10*time.Second, "one", func(s []registry.Instance) bool { return len(s) == 1 && s[0].ID == "one" })
			if err := em.AddEndpoint(ctxFor(t, 5*time.Second), target+"/two", endpoints.Endpoint{Addr: two.Addr, Metadata: map[string]any{"weight": "foreign"}}); err != nil {
				t.Fatal(err)
			}
			await(t, results, 10*time.Second, "one and two", func(s []registry.Instance) bool { return len(s) == 2 })

			// A real ClientConn through Wayfinder's resolver reaches both.
			q := "?prefix=" + url.QueryEscape(tc.prefix)
			cache := resolver.NewCache()
			t.Cleanup(func() { cache.Close() })
			conn, err := cache.NewClient("etcd://"+srv.Endpoint()+"/"+svc+q,
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			seen := map[string]bool{}
			wait.For(t, 10*time.Second, "RPCs answered by one and two", func() bool {
				seen[sayHello(t, conn)] = true
				return seen["one"] && seen["two"]
			})
			if err := em.DeleteEndpoint(ctxFor(t, 5*time.Second), target+"/one"); err != nil {
				t.Fatal(err)
			}
			await(t, results, 10*time.Second, "only two", func(s []registry.Instance) bool { return len(s) == 1 && s[0].ID == "two" })
			if p := r.FieldProblems(svc); len(p) != 0 {
				t.Errorf("FieldProblems(%q) = %v; foreign Metadata without Wayfinder's marker is not a problem", svc, p)
			}
		})
	}
}

// TestNamingResolverDialsWayfinder: a client on etcd's own naming
// resolver dials a service that Wayfinder registered, and etcd's
// endpoints.Manager sees Wayfinder's fields in the entry's Metadata.
func TestNamingResolverDialsWayfinder(t *testing.T) {
	srv := testenv.StartEtcd(t)
	cli := testenv.NewEtcdClient(t, nil, srv.Endpoint())
	r := newRegistry(t, []string{srv.Endpoint()})
	svc := svcName(t)
	hs := testenv.StartHello(t, "wayfinder")
	in := registry.Instance{ID: "w1", Service: svc, Address: hs.Addr, Version: "v1.4.2", Zone: "eu-west-1a", Weight: 3,
		Tags: []string{"canary"}, Metadata: map[string]string{"owner": "team-a"}}
	if err := r.Register(ctxFor(t, 10*time.Second), in); err != nil {
		t.Fatal(err)
	}

	// etcd's naming target is the key prefix without its leading slash
	// trimmed: Wayfinder's default prefix is absolute, so the path starts
	// with two slashes.
	target := r.Prefix() + "/" + svc
	em, err := endpoints.NewManager(cli, target)
	if err != nil {
		t.Fatal(err)
	}
	eps, err := em.List(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ep, ok := eps[target+"/w1"]
	if !ok || ep.Addr != hs.Addr {
		t.Fatalf("endpoints.Manager(%q).List() = %v; want %s/w1 at %s", target, eps, target, hs.Addr)
	}
	md, _ := json.Marshal(ep.Metadata)
	var fields struct {
		Wayfinder int               `json:"wayfinder"`
		Version   string            `json:"version"`
		Zone      string            `json:"zone"`
		Weight    int               `json:"weight"`
		Tags      []string          `json:"tags"`
		Metadata  map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal(md, &fields); err != nil || fields.Wayfinder != 1 || fields.Version != in.Version ||
		fields.Zone != in.Zone || fields.Weight != 3 || len(fields.Tags) != 1 || fields.Metadata["owner"] != "team-a" {
		t.Errorf("naming Metadata = %s, %v; want Wayfinder's fields of %+v", md, err, in)
	}

	b, err := etcdresolver.NewBuilder(cli)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("etcd:///"+target, grpc.WithResolvers(b), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if got := sayHello(t, conn); got != "wayfinder" {
		t.Errorf("SayHello through etcd's naming resolver answered by %q, want wayfinder", got)
	}

	// A Wayfinder reader gets every field back.
	got, err := r.Lookup(ctxFor(t, 5*time.Second), svc)
	if err != nil || len(got) != 1 || !got[0].Equal(in) {
		t.Errorf("Lookup(%q) = %v, %v; want %v", svc, got, err, in)
	}
}

// TestFormatV1StillReadAndWritten: values of the format before naming
// support are still decoded, and WithFormat(FormatV1) (or ?format=v1)
// writes them for fleets whose older readers are not upgraded yet.
func TestFormatV1StillReadAndWritten(t *testing.T) {
	srv := testenv.StartEtcd(t)
	cli := testenv.NewEtcdClient(t, nil, srv.Endpoint())
	byURL, err := etcd.Open("etcd://" + srv.Endpoint() + "?format=v1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { byURL.Close() })
	for name, old := range map[string]*etcd.Registry{
		"option": newRegistry(t, []string{srv.Endpoint()}, etcd.WithFormat(etcd.FormatV1)),
		"url":    byURL,
	} {
		t.Run(name, func(t *testing.T) { formatV1(t, srv, cli, old) })
	}
}

func formatV1(t *testing.T, srv *testenv.EtcdMember, cli *clientv3.Client, old *etcd.Registry) {
	svc := svcName(t)
	in := inst(svc, 1)
	in.Weight, in.Zone = 4, "z1"
	if err := old.Register(ctxFor(t, 10*time.Second), in); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctxFor(t, 5*time.Second), old.Prefix()+"/"+svc+"/"+in.ID)
	if err != nil || len(resp.Kvs) != 1 || !strings.HasPrefix(string(resp.Kvs[0].Value), `{"v":1,`) {
		t.Fatalf("value written with FormatV1 = %v, %v; want {\"v\":1,...}", resp, err)
	}
	r := newRegistry(t, []string{srv.Endpoint()})
	if got, err := r.Lookup(ctxFor(t, 5*time.Second), svc); err != nil || len(got) != 1 || !got[0].Equal(in) {
		t.Errorf("Lookup(%q) of a FormatV1 value = %v, %v; want %v", svc, got, err, in)
	}
}

// TestOptionalFieldProblemsKeepInstance: an entry whose only faults are
// optional fields is kept with their defaults, and each fault is
// reported once: a Warn log, a counter, FieldProblems.
func TestOptionalFieldProblemsKeepInstance(t *testing.T) {
	srv := testenv.StartEtcd(t)
	admin := testenv.NewEtcdClient(t, nil, srv.Endpoint())
	logs := &logRecorder{}
	r := newRegistry(t, []string{srv.Endpoint()}, etcd.WithLogger(logs.logger()))
	svc := svcName(t)
	base := r.Prefix() + "/" + svc + "/"
	values := map[string]string{
		"naming": `{"Op":0,"Addr":"127.0.0.1:1","Metadata":{"wayfinder":1,"weight":"heavy","zone":"eu-1"}}`,
		"v1":     `{"v":1,"id":"v1","service":"` + svc + `","address":"127.0.0.1:2","weight":3,"tags":["ok",7],"version":"bad version\u0001"}`,
	}
	for id, v := range values {
		if _, err := admin.Put(ctxFor(t, 5*time.Second), base+id, v); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		got, err := r.Lookup(ctxFor(t, 5*time.Second), svc)
		if err != nil || len(got) != 2 {
			t.Fatalf("Lookup(%q) = %v, %v; want both instances kept", svc, got, err)
		}
		if n, v := got[0], got[1]; n.ID != "naming" || n.Weight != 0 || n.Zone != "eu-1" || v.ID != "v1" || v.Weight != 3 || v.Tags != nil || v.Version != "" {
			t.Fatalf("Lookup(%q) = %+v; want naming (weight default, zone eu-1) and v1 (weight 3, no tags, no version)", svc, got)
		}
	}
	w, err := r.Watch(ctxFor(t, time.Second), svc)
	if err != nil {
		t.Fatal(err)
	}
	await(t, follow(t, w), 10*time.Second, "both", func(s []registry.Instance) bool { return len(s) == 2 })
	problems := r.FieldProblems(svc)
	var fields []string
	for _, p := range problems {
		fields = append(fields, p.ID+":"+p.Field)
	}
	if want := "naming:Metadata.weight v1:tags v1:version"; strings.Join(fields, " ") != want {
		t.Errorf("FieldProblems(%q) = %v; want %s", svc, problems, want)
	}
	if got := r.Stats().FieldProblems; got != 3 {
		t.Errorf("Stats().FieldProblems = %d after 3 lookups and a watch; want 3 (once per instance and value)", got)
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"etcd: ignoring a field"); n != 3 {
		t.Errorf("%d Warn records about ignored fields; want 3. Logs:\n%s", n, logs.String())
	}
}
