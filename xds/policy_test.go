package xds_test

import (
	"net"
	"slices"
	"testing"
	"time"

	statuspb "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

// TestPolicyFallback: a cluster whose policies are a custom policy no
// client has (gRFC A52), then least_request, then round_robin, is
// accepted by Go, Python and Node clients alike (CSDS says SYNCED, no
// NACK), each of which balances with the first policy it supports and
// reaches every instance.
func TestPolicyFallback(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	startHello(t, reg, "a")
	startHello(t, reg, "b")
	srv, addr, _ := startXDS(t, reg, "127.0.0.1:0", xds.WithPolicy("hello",
		xds.Policy{Name: "wayfinder_no_such_policy", Config: map[string]any{"x": 1}},
		xds.Policy{Name: "least_request", Config: map[string]any{"choiceCount": 3}},
	))
	status := csdsClient(t, addr)
	clients := []*client{startClient(t, "go", addr), startPython(t, "python", addr), startNode(t, "node", addr)}
	for _, c := range clients {
		c.waitPicks(t, 0, "a", "b")
		wait.For(t, 10*time.Second, c.name+" to accept the cluster", func() bool {
			return csdsStatus(t, status, c.name, resourcev3.ClusterType, "hello").GetConfigStatus() == statuspb.ConfigStatus_SYNCED
		})
	}
	if n := srv.Stats().NACKs; n != 0 {
		t.Errorf("Stats().NACKs = %d, want 0: %+v", n, srv.Clients())
	}
}

func TestPolicyOptions(t *testing.T) {
	reg := memory.New()
	t.Cleanup(func() { reg.Close() })
	for _, p := range []xds.Policy{
		{},
		{Name: "round_robin", Config: map[string]any{"x": 1}},
		{Name: "least_request", Config: map[string]any{"choiceCount": 1}},
		{Name: "least_request", Config: map[string]any{"other": 2}},
		{Name: "bad name"},
		{Name: "custom", Config: map[string]any{"f": func() {}}},
		{Name: "ring_hash", Config: map[string]any{"minRingSize": 64}},
	} {
		if s, err := xds.New(reg, xds.WithPolicy("hello", p)); err == nil {
			s.Close()
			t.Errorf("xds.New(WithPolicy(%+v)): nil error", p)
		}
	}
}

// synced waits until CSDS says client c has ACKed the listener and the
// cluster of "hello" as the server sent them.
func synced(t *testing.T, status statuspb.ClientStatusDiscoveryServiceClient, c *client) {
	t.Helper()
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.ClusterType} {
		wait.For(t, 30*time.Second, c.name+" to accept "+typ, func() bool {
			return csdsStatus(t, status, c.name, typ, "hello").GetConfigStatus() == statuspb.ConfigStatus_SYNCED
		})
	}
}

// stickyPick waits until the last n calls of c all reached one
// instance, and returns it.
func stickyPick(t *testing.T, c *client, n int) string {
	t.Helper()
	mark := c.calls()
	var one string
	ok := wait.Until(60*time.Second, func() bool {
		got := c.picksSince(mark)
		if len(got) < n {
			return false
		}
		last := got[len(got)-n:]
		one = last[0]
		return !slices.ContainsFunc(last, func(p string) bool { return p != one })
	})
	if !ok {
		got := c.picksSince(mark)
		t.Fatalf("%s: the last %d calls reached %v, want one instance", c.name, n, counts(got[max(0, len(got)-n):]))
	}
	return one
}

// TestPolicyRingHash: a ring_hash cluster with a route that hashes on
// the x-user header is accepted by Go, Python and Node clients (SYNCED,
// no NACK). In Go and Node, calls that carry the same x-user land on one
// instance, and calls without it (a random hash each) spread; Python's
// grpcio 1.51 has no load_balancing_policy and falls back to round_robin
// (the cluster's lb_policy: RING_HASH would crash it), so its calls
// spread with or without the header.
func TestPolicyRingHash(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	names := []string{"a", "b", "c", "d"}
	for _, n := range names {
		startHello(t, reg, n)
	}
	srv, addr, _ := startXDS(t, reg, "127.0.0.1:0",
		xds.WithPolicy("hello", xds.Policy{Name: "ring_hash"}),
		xds.WithHashHeader("hello", "x-user"))
	status := csdsClient(t, addr)
	for _, tc := range []struct {
		c      *client
		sticks bool
	}{
		{startClient(t, "go-alice", addr, "x-user=alice"), true},
		{startNode(t, "node-alice", addr, "x-user=alice"), true},
		{startPython(t, "python-alice", addr, "x-user=alice"), false},
		{startClient(t, "go", addr), false},
		{startNode(t, "node", addr), false},
		{startPython(t, "python", addr), false},
	} {
		synced(t, status, tc.c)
		if tc.sticks {
			t.Logf("%s: x-user=alice lands on %s", tc.c.name, stickyPick(t, tc.c, 200))
		} else {
			tc.c.waitPicks(t, tc.c.calls(), names...)
		}
	}
	if n := srv.Stats().NACKs; n != 0 {
		t.Errorf("Stats().NACKs = %d, want 0: %+v", n, srv.Clients())
	}
}

// TestPolicyOutlierDetection: a cluster with outlier detection (A50)
// over least_request is accepted by Go, Python and Node clients alike
// (SYNCED, no NACK), and each reaches every instance.
func TestPolicyOutlierDetection(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	startHello(t, reg, "a")
	startHello(t, reg, "b")
	srv, addr, _ := startXDS(t, reg, "127.0.0.1:0",
		xds.WithPolicy("hello", xds.Policy{Name: "least_request"}),
		xds.WithOutlierDetection("hello", xds.OutlierDetection{
			Interval:               time.Second,
			MaxEjectionPercent:     50,
			FailurePercent:         50,
			FailureMinimumHosts:    2,
			FailureRequestVolume:   10,
			SuccessRateStdevFactor: 1900,
		}))
	status := csdsClient(t, addr)
	for _, c := range []*client{startClient(t, "go", addr), startPython(t, "python", addr), startNode(t, "node", addr)} {
		c.waitPicks(t, 0, "a", "b")
		synced(t, status, c)
		c.waitPicks(t, c.calls(), "a", "b")
	}
	if n := srv.Stats().NACKs; n != 0 {
		t.Errorf("Stats().NACKs = %d, want 0: %+v", n, srv.Clients())
	}
}

func TestPolicyOptionsMore(t *testing.T) {
	reg := memory.New()
	t.Cleanup(func() { reg.Close() })
	ring := xds.WithPolicy("hello", xds.Policy{Name: "ring_hash"})
	for name, opts := range map[string][]xds.Option{
		"ring_hash not first":        {xds.WithPolicy("hello", xds.Policy{Name: "least_request"}, xds.Policy{Name: "ring_hash"})},
		"hash header, no ring_hash":  {xds.WithHashHeader("hello", "x-user")},
		"hash header, least_request": {xds.WithPolicy("hello", xds.Policy{Name: "least_request"}), xds.WithHashHeader("hello", "x-user")},
		"empty header":               {ring, xds.WithHashHeader("hello", "")},
		"upper case header":          {ring, xds.WithHashHeader("hello", "X-User")},
		"grpc- header":               {ring, xds.WithHashHeader("hello", "grpc-timeout")},
		"-bin header":                {ring, xds.WithHashHeader("hello", "x-user-bin")},
		"pseudo-header":              {ring, xds.WithHashHeader("hello", ":authority")},
		"hash header, bad service":   {ring, xds.WithHashHeader("", "x-user")},
		"outlier: nothing ejects":    {xds.WithOutlierDetection("hello", xds.OutlierDetection{})},
		"outlier: percent 101":       {xds.WithOutlierDetection("hello", xds.OutlierDetection{FailurePercent: 101})},
		"outlier: max ejection 0..":  {xds.WithOutlierDetection("hello", xds.OutlierDetection{FailurePercent: 50, MaxEjectionPercent: 101})},
		"outlier: max < base":        {xds.WithOutlierDetection("hello", xds.OutlierDetection{FailurePercent: 50, BaseEjectionTime: time.Minute, MaxEjectionTime: time.Second})},
		"outlier: negative interval": {xds.WithOutlierDetection("hello", xds.OutlierDetection{FailurePercent: 50, Interval: -time.Second})},
		"outlier: negative count":    {xds.WithOutlierDetection("hello", xds.OutlierDetection{SuccessRateStdevFactor: 1900, SuccessRateMinimumHosts: -1})},
		"outlier: count overflows":   {xds.WithOutlierDetection("hello", xds.OutlierDetection{FailurePercent: 50, FailureRequestVolume: 1 << 33})},
		"outlier: bad service":       {xds.WithOutlierDetection("", xds.OutlierDetection{FailurePercent: 50})},
	} {
		if s, err := xds.New(reg, opts...); err == nil {
			s.Close()
			t.Errorf("%s: xds.New(): nil error", name)
		}
	}
	s, err := xds.New(reg, ring, xds.WithHashHeader("hello", "x-user"),
		xds.WithOutlierDetection("hello", xds.OutlierDetection{SuccessRateStdevFactor: 1900}))
	if err != nil {
		t.Fatalf("xds.New(ring_hash, x-user, outlier detection) = %v", err)
	}
	s.Close()
}

// TestOutlierEjection: with outlier detection on, a client that keeps
// failing on one instance (a gRPC server without the HelloService:
// every call UNIMPLEMENTED) ejects it: its calls then succeed, on the
// healthy instances only.
func TestOutlierEjection(t *testing.T) {
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	startHello(t, reg, "a")
	startHello(t, reg, "b")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bad := grpc.NewServer()
	served := make(chan error, 1)
	go func() { served <- bad.Serve(lis) }()
	t.Cleanup(func() {
		bad.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve(bad) = %v", err)
		}
	})
	if err := reg.Register(t.Context(), registry.Instance{ID: "bad", Service: "hello", Address: lis.Addr().String()}); err != nil {
		t.Fatalf("Register(bad) = %v", err)
	}
	_, addr, _ := startXDS(t, reg, "127.0.0.1:0", xds.WithOutlierDetection("hello", xds.OutlierDetection{
		Interval:             time.Second,
		BaseEjectionTime:     10 * time.Minute, // the test never sees it return
		MaxEjectionPercent:   50,
		FailurePercent:       50,
		FailureMinimumHosts:  3,
		FailureRequestVolume: 5,
	}))
	for _, c := range []*client{startClient(t, "go", addr), startPython(t, "python", addr), startNode(t, "node", addr)} {
		c.waitPicks(t, 0, "a", "b")
		wait.For(t, 30*time.Second, c.name+" to fail on the bad instance", func() bool { return len(c.failures()) > 0 })
		ok := wait.Until(60*time.Second, func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return len(c.picks)-c.after >= 300
		})
		c.mu.Lock()
		n, since := len(c.fails), len(c.picks)-c.after
		c.fails = nil // expected: the calls before the ejection
		c.mu.Unlock()
		if !ok {
			t.Errorf("%s: %d failed calls, the last %d calls ago: the bad instance was not ejected", c.name, n, since)
		} else {
			t.Logf("%s: %d failed calls before the bad instance was ejected", c.name, n)
		}
	}
}
