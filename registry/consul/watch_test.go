package consul_test

import (
	"bytes"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// TestLeaderStop kills the leader of a 3-server cluster under a running
// watcher: the watch resumes on the new leader and converges.
func TestLeaderStop(t *testing.T) {
	c := testenv.StartConsulCluster(t, 3)
	leader := c.Leader(t)
	var followers []*testenv.ConsulAgent
	for _, a := range c.Agents {
		if a != leader {
			followers = append(followers, a)
		}
	}
	client := newReg(t, followers[0].HTTPAddr(), fast)
	server := newReg(t, followers[1].HTTPAddr(), fast)
	svc := registrytest.ServiceName(t)
	a, b := registrytest.MakeInstance(svc, 1), registrytest.MakeInstance(svc, 2)
	if err := server.Register(ctxT(t, 20*time.Second), a); err != nil {
		t.Fatalf("Register(a) = %v", err)
	}
	w := mustWatch(t, client, svc)
	nextUntil(t, w, 20*time.Second, "a", func(in []registry.Instance) bool { return sameIDs(in, a.ID) })

	leader.Kill()
	// Registration goes to the local agent and reaches the catalog once
	// a new leader is elected; the watch must follow without help.
	if err := server.Register(ctxT(t, 20*time.Second), b); err != nil {
		t.Logf("Register(b) during the election = %v (retried in the background)", err)
	}
	nextUntil(t, w, 30*time.Second, "a and b after the leader died", func(in []registry.Instance) bool { return sameIDs(in, a.ID, b.ID) })
	newLeader := c.Leader(t)
	if newLeader == leader {
		t.Fatalf("leader unchanged after kill")
	}
	if err := server.Deregister(ctxT(t, 20*time.Second), a); err != nil {
		t.Fatalf("Deregister(a) = %v", err)
	}
	nextUntil(t, w, 20*time.Second, "only b", func(in []registry.Instance) bool { return sameIDs(in, b.ID) })
}

// countingProxy is a reverse proxy in front of a real agent that counts
// health queries for one service.
type countingProxy struct {
	*httptest.Server
	mu     sync.Mutex
	counts map[string]int
	waits  []string
}

func newCountingProxy(t *testing.T, agentURL string) *countingProxy {
	return newCountingProxyB(t, agentURL)
}

func newCountingProxyB(t testing.TB, agentURL string) *countingProxy {
	u, err := url.Parse(agentURL)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{counts: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0) // cancelled long polls are expected
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.counts[r.URL.Path]++
		if r.URL.Query().Has("index") {
			p.waits = append(p.waits, r.URL.Query().Get("wait"))
		}
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *countingProxy) count(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[path]
}

// TestIdleWatcherRequests: an idle watcher makes at most one request per
// wait period, counted by a proxy in front of the real agent.
func TestIdleWatcherRequests(t *testing.T) {
	const wait, idle = time.Second, 6 * time.Second
	proxy := newCountingProxy(t, "http://"+shared.HTTPAddr())
	svc := registrytest.ServiceName(t)
	server := newReg(t, shared.HTTPAddr())
	inst := registrytest.MakeInstance(svc, 1)
	if err := server.Register(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Register = %v", err)
	}
	client := newReg(t, proxy.Listener.Addr().String(), consul.WithWait(wait))
	w := mustWatch(t, client, svc)
	nextUntil(t, w, 10*time.Second, "the instance", func(in []registry.Instance) bool { return sameIDs(in, inst.ID) })
	path := "/v1/health/service/" + svc
	before := proxy.count(path)
	ctx := ctxT(t, idle)
	if got, err := w.Next(ctx); !errors.Is(err, ctx.Err()) || ctx.Err() == nil {
		t.Fatalf("Next() while idle = %v, %v; want to block until the deadline", ids(got), err)
	}
	n := proxy.count(path) - before
	t.Logf("idle watcher: %d requests in %v with wait %v", n, idle, wait)
	// One request per wait, plus the one in flight at the start.
	if max := int(idle/wait) + 1; n > max {
		t.Errorf("idle watcher made %d requests in %v with wait %v, want at most %d", n, idle, wait, max)
	}
	if n < 2 {
		t.Errorf("idle watcher made %d requests in %v with wait %v: not long-polling?", n, idle, wait)
	}
	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	for _, wv := range proxy.waits {
		if wv != "1000ms" && wv != "1s" {
			t.Errorf("blocking query sent wait=%q, want 1s", wv)
			break
		}
	}
}

// TestACL: with ACLs on and default deny, a wrong token is a clear
// permission error wrapping registry.ErrPermissionDenied, everywhere, and the
// token never shows up in errors or logs; the right one, from the
// environment or a file, works.
func TestACL(t *testing.T) {
	const root, bogus = "5e1b3c4a-0000-4000-8000-000000000001", "5e1b3c4a-dead-4bad-8bad-000000000bad"
	agent := testenv.StartConsulWith(t, testenv.ConsulOptions{HCL: `
acl {
  enabled = true
  default_policy = "deny"
  tokens {
    initial_management = "` + root + `"
    agent = "` + root + `"
  }
}
`})
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := registrytest.ServiceName(t)
	inst := registrytest.MakeInstance(svc, 1)

	wrong := newReg(t, agent.HTTPAddr(), consul.WithToken(bogus), consul.WithLogger(logger), fast)
	checkDenied := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, registry.ErrPermissionDenied) || !errors.Is(err, registry.ErrUnavailable) {
			t.Errorf("%s with a wrong token = %v, want registry.ErrPermissionDenied", op, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "ACL token") || strings.Contains(err.Error(), bogus)) {
			t.Errorf("%s error %q should explain the ACL token and not contain it", op, err)
		}
	}
	checkDenied("Register", wrong.Register(ctxT(t, 10*time.Second), inst))
	_, err := wrong.Lookup(ctxT(t, 10*time.Second), svc)
	checkDenied("Lookup", err)
	w := mustWatch(t, wrong, svc)
	_, err = w.Next(ctxT(t, 10*time.Second))
	checkDenied("Next", err)
	w.Close()
	wrong.Close()

	t.Setenv("CONSUL_HTTP_TOKEN", root)
	right := newReg(t, agent.HTTPAddr(), consul.WithLogger(logger), fast)
	if err := right.Register(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Register with CONSUL_HTTP_TOKEN = %v", err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(root+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONSUL_HTTP_TOKEN", bogus) // the file option must win over the environment
	fromFile := newReg(t, agent.HTTPAddr(), consul.WithTokenFile(tokenFile), consul.WithLogger(logger))
	lookupUntil(t, fromFile, svc, 10*time.Second, "the instance", func(in []registry.Instance) bool { return sameIDs(in, inst.ID) })
	if err := right.Deregister(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Deregister = %v", err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if s := logs.String(); strings.Contains(s, root) || strings.Contains(s, bogus) {
		t.Errorf("a token appears in the logs:\n%s", s)
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestTLS: the HTTP API over HTTPS with certificates made by the test,
// configured through Consul's environment variables or options; without
// the CA the client refuses the server.
func TestTLS(t *testing.T) {
	files := testenv.GenerateTLS(t)
	agent := testenv.StartConsulWith(t, testenv.ConsulOptions{TLS: files})
	svc := registrytest.ServiceName(t)
	inst := registrytest.MakeInstance(svc, 1)

	untrusted := newReg(t, "https://"+agent.HTTPAddr())
	if _, err := untrusted.Lookup(ctxT(t, 10*time.Second), svc); !errors.Is(err, registry.ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Lookup without the CA = %v, want a certificate error", err)
	}

	t.Setenv("CONSUL_HTTP_ADDR", agent.HTTPAddr())
	t.Setenv("CONSUL_HTTP_SSL", "true")
	t.Setenv("CONSUL_CACERT", files.CAFile)
	fromEnv := newReg(t, "")
	if err := fromEnv.Register(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Register over TLS from the environment = %v", err)
	}
	t.Setenv("CONSUL_CACERT", "")
	t.Setenv("CONSUL_HTTP_SSL", "")
	fromOpts := newReg(t, agent.HTTPAddr(), consul.WithTLS(api.TLSConfig{CAFile: files.CAFile}))
	lookupUntil(t, fromOpts, svc, 10*time.Second, "the instance", func(in []registry.Instance) bool { return sameIDs(in, inst.ID) })

	t.Setenv("CONSUL_CACERT", files.CAFile)
	reg, err := registry.Open(t.Context(), "consul://"+agent.HTTPAddr()+"?tls=true")
	if err != nil {
		t.Fatalf("Open(?tls=true) = %v", err)
	}
	defer reg.Close()
	lookupUntil(t, reg, svc, 10*time.Second, "the instance via the URL", func(in []registry.Instance) bool { return sameIDs(in, inst.ID) })
	if err := fromEnv.Deregister(ctxT(t, 10*time.Second), inst); err != nil {
		t.Fatalf("Deregister = %v", err)
	}
}
