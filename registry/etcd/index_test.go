package etcd_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// TestWatcherIndexIsRevision: the watcher's registry.IndexedWatcher index
// is the etcd revision its set was read at: the listing's header revision
// for the first set, the revision of the event that changed it after.
func TestWatcherIndexIsRevision(t *testing.T) {
	srv := testenv.StartEtcd(t)
	admin := testenv.NewEtcdClient(t, nil, srv.Endpoint())
	r := newRegistry(t, []string{srv.Endpoint()})
	svc := svcName(t)
	// Unrelated writes move the revision away from 1, so that an index
	// that merely counts would not pass by chance.
	for i := range 3 {
		if _, err := admin.Put(ctxFor(t, 5*time.Second), "/unrelated/"+strconv.Itoa(i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	w, err := r.Watch(ctxFor(t, 5*time.Second), svc)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	iw, ok := w.(registry.IndexedWatcher)
	if !ok {
		t.Fatalf("%T does not implement registry.IndexedWatcher", w)
	}
	next := func(what string, cond func([]registry.Instance) bool) string {
		t.Helper()
		ctx := ctxFor(t, 10*time.Second)
		for {
			got, err := w.Next(ctx)
			if err == nil && cond(got) {
				return iw.Index()
			}
			if ctx.Err() != nil {
				t.Fatalf("Next() never showed %s; last %v, %v", what, ids(got), err)
			}
		}
	}
	revNow := func() string {
		t.Helper()
		resp, err := admin.Get(ctxFor(t, 5*time.Second), "/unrelated/0")
		if err != nil {
			t.Fatal(err)
		}
		return strconv.FormatInt(resp.Header.Revision, 10)
	}

	if got, want := next("the empty set", has()), revNow(); got != want {
		t.Errorf("Index() of the first (listed) set = %q, want the revision of the listing, %s", got, want)
	}
	a := inst(svc, 1)
	if err := r.Register(ctxFor(t, 5*time.Second), a); err != nil {
		t.Fatal(err)
	}
	afterPut := next("a", has(a))
	resp, err := admin.Get(ctxFor(t, 5*time.Second), r.Prefix()+"/"+svc+"/"+a.ID)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("Get(a's key) = %v, %v", resp, err)
	}
	if want := strconv.FormatInt(resp.Kvs[0].ModRevision, 10); afterPut != want {
		t.Errorf("Index() after a's registration = %q, want the revision of its put, %s", afterPut, want)
	}
	// A write elsewhere changes the revision but not the set: no Next
	// returns, and the index stays that of the set.
	if _, err := admin.Put(ctxFor(t, 5*time.Second), "/unrelated/0", "y"); err != nil {
		t.Fatal(err)
	}
	if err := r.Deregister(ctxFor(t, 5*time.Second), a); err != nil {
		t.Fatal(err)
	}
	afterDelete := next("the empty set again", has())
	if want := revNow(); afterDelete != want {
		t.Errorf("Index() after a's removal = %q, want the revision of the delete, %s", afterDelete, want)
	}
	w.Close()
	if got := iw.Index(); got != afterDelete {
		t.Errorf("Index() after Close = %q, want the last set's %q", got, afterDelete)
	}
}
