package xds_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

// TestDebugHandler: the debug page shows each client by node ID, with
// what it asks for and whether it accepted what was sent, as JSON and as
// HTML (which escapes the client-given node ID).
func TestDebugHandler(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	startHello(t, reg, "a")
	srv, addr, _ := startXDS(t, reg, "127.0.0.1:0")
	const node = "go-<b>"
	c := startClient(t, node, addr)
	c.waitPicks(t, 0, "a")
	web := httptest.NewServer(xds.DebugHandler(srv))
	t.Cleanup(web.Close)

	get := func(url string) string {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d, %v", url, resp.StatusCode, err)
		}
		return string(b)
	}
	type typ struct {
		Type, Sent, Acked, NACK string
		Names                   []string
	}
	var v struct {
		Streams int
		Clients []struct {
			Node  string
			Types []typ
		}
	}
	var last string
	ok := wait.Until(10*time.Second, func() bool {
		v.Clients = nil
		last = get(web.URL + "?format=json")
		if err := json.Unmarshal([]byte(last), &v); err != nil {
			t.Fatalf("the JSON page: %v", err)
		}
		// Listener, Cluster, ClusterLoadAssignment: the route is inline.
		if len(v.Clients) != 1 || v.Clients[0].Node != node || len(v.Clients[0].Types) != 3 {
			return false
		}
		for _, ty := range v.Clients[0].Types {
			if ty.Sent == "" || ty.Sent != ty.Acked || ty.NACK != "" || len(ty.Names) != 1 || ty.Names[0] != "hello" {
				return false
			}
		}
		return v.Streams == 1
	})
	if !ok {
		t.Fatalf("the JSON page does not show %s synced on its listener, cluster and endpoints:\n%s", node, last)
	}
	page := get(web.URL)
	for _, want := range []string{"go-&lt;b&gt;", "Cluster", "ClusterLoadAssignment", "synced", "1 streams"} {
		if !strings.Contains(page, want) {
			t.Errorf("the HTML page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, "<b>") {
		t.Errorf("the HTML page has the node ID unescaped:\n%s", page)
	}
	if resp, err := http.Post(web.URL, "text/plain", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST = %v, %v; want 405", resp, err)
	} else {
		resp.Body.Close()
	}
}
