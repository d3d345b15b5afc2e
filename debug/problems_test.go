package debug_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/debug"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// TestFieldProblemsShown: a registration written by another tool, whose
// weight Wayfinder cannot read, is kept with the default weight, and the
// page says which field of which instance was ignored and why, on a real
// etcd.
func TestFieldProblemsShown(t *testing.T) {
	srv := testenv.StartEtcd(t)
	admin := testenv.NewEtcdClient(t, nil, srv.Endpoint())
	reg, err := etcd.New([]string{srv.Endpoint()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for id, v := range map[string]string{
		"foreign": `{"Op":0,"Addr":"127.0.0.1:1","Metadata":{"wayfinder":1,"weight":"heavy"}}`,
		"clean":   `{"Op":0,"Addr":"127.0.0.1:2","Metadata":{"wayfinder":1,"weight":2}}`,
	} {
		if _, err := admin.Put(ctx, reg.Prefix()+"/orders/"+id, v); err != nil {
			t.Fatal(err)
		}
	}
	cache := resolver.NewCache(resolver.WithLinger(0))
	t.Cleanup(func() { cache.Close() })
	// The instances' addresses do not listen: the page needs only the
	// watch, which the ClientConn's resolver starts.
	cc, err := grpc.NewClient("wayfinder:///orders", grpc.WithResolvers(resolver.NewBuilder(reg, resolver.WithCache(cache))),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	cc.Connect()
	h := debug.NewHandler(debug.WithCache(cache))
	if !wait.Until(10*time.Second, func() bool {
		v := h.Snapshot()
		return len(v.Watches) == 1 && len(v.Watches[0].Instances) == 2
	}) {
		t.Fatalf("the watch never had both instances: %+v", h.Snapshot().Watches)
	}
	ps := h.Snapshot().Watches[0].FieldProblems
	if len(ps) != 1 || ps[0].ID != "foreign" || ps[0].Field != "Metadata.weight" || ps[0].Value != "heavy" {
		t.Fatalf("FieldProblems = %+v; want one, foreign's Metadata.weight", ps)
	}
	page := httptest.NewServer(h)
	t.Cleanup(page.Close)
	resp, err := http.Get(page.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `<tr class="field-problem"><td>foreign</td><td><code>Metadata.weight</code>`) {
		t.Errorf("the page does not list foreign's weight problem:\n%s", body)
	}
}
