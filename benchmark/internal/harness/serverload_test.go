package harness

import (
	"testing"
	"time"
)

// TestRunServerLoad runs the server-load scenario at a tiny size on a
// real Consul server with client agents and a real etcd member, and
// checks what must hold anywhere: every child's watches converged, one
// watch per service per child, the streaming configuration was answered
// by streaming and the other by blocking queries, and the server sent
// bytes under change (the socket accounting sees its traffic).
func TestRunServerLoad(t *testing.T) {
	cfg := tiny("consul", "etcd")
	cfg.Scenarios = []string{"server_load"}
	cfg.LoadClients, cfg.LoadServices = 2, 3
	cfg.LoadIdle, cfg.LoadChange, cfg.LoadRate = time.Second, 2*time.Second, 2
	rep := Run(t, cfg)
	for _, f := range rep.Failures {
		t.Fatalf("scenario %s run %d failed: %s", f.Scenario, f.Run, f.Error)
	}
	for _, v := range []string{"consul_streaming", "consul_blocking_query", "etcd"} {
		if got := metric(t, rep, "server_load", "-", v, "converged_children"); got != float64(cfg.LoadClients) {
			t.Errorf("server_load %s: %v children converged, want %d", v, got, cfg.LoadClients)
		}
		if got := metric(t, rep, "server_load", "-", v, "min_watches_per_child"); got != float64(cfg.LoadServices) {
			t.Errorf("server_load %s: a child has %v upstream watches, want one per service (%d)", v, got, cfg.LoadServices)
		}
		if got := metric(t, rep, "server_load", "-", v, "changes"); got < 1 {
			t.Errorf("server_load %s: %v changes in the change window, want some", v, got)
		}
		if got := metric(t, rep, "server_load", "-", v, "change_kib_sent_per_min"); !(got > 0) {
			t.Errorf("server_load %s: the server sent %v KiB/min under change, want > 0", v, got)
		}
		metric(t, rep, "server_load", "-", v, "idle_cpu_s_per_min")
	}
	if s, b := metric(t, rep, "server_load", "-", "consul_streaming", "streaming_queries"), metric(t, rep, "server_load", "-", "consul_streaming", "blocking_queries"); s == 0 || b != 0 {
		t.Errorf("server_load consul_streaming: %v streaming and %v blocking-query answers, want only streaming", s, b)
	}
	if s, b := metric(t, rep, "server_load", "-", "consul_blocking_query", "streaming_queries"), metric(t, rep, "server_load", "-", "consul_blocking_query", "blocking_queries"); s != 0 || b == 0 {
		t.Errorf("server_load consul_blocking_query: %v streaming and %v blocking-query answers, want only blocking-query", s, b)
	}

	checkReport(t, rep, []string{"## 10. Load on the registry servers", "| Consul, streaming | under change |", "| etcd | idle |", "benchmarks/server_load_bytes.svg"},
		"server_load_bytes.svg", "server_load_cpu.svg")
}

func TestParseSS(t *testing.T) {
	out := []byte("0      0      127.0.0.1:8300 127.0.0.1:50001 users:((\"consul\",pid=42,fd=20))\n" +
		"\t bbr wscale:10,10 rto:204 bytes_sent:1500 bytes_acked:1500 bytes_received:837\n" +
		"0      0      127.0.0.1:8300 127.0.0.1:50002 users:((\"consul\",pid=42,fd=21))\n" +
		"\t bbr bytes_sent:100 bytes_received:5\n" +
		"0      0      127.0.0.1:50002 127.0.0.1:8300 users:((\"consul\",pid=42,fd=22))\n" +
		"\t bbr bytes_sent:5 bytes_received:100\n" +
		"0      0      127.0.0.1:9000 127.0.0.1:50003 users:((\"etcd\",pid=420,fd=9))\n" +
		"\t bbr bytes_sent:7777\n")
	got, err := parseSS(out, 42)
	if err != nil {
		t.Fatal(err)
	}
	// The connection of pid 42 to itself (50002 ↔ 8300) and pid 420's
	// socket are left out.
	if len(got) != 1 || got["127.0.0.1:8300 127.0.0.1:50001"] != 1500 {
		t.Errorf("parseSS(..., 42) = %v, want only 127.0.0.1:8300 127.0.0.1:50001 with 1500", got)
	}
	u := serverUsage{cpu: time.Second, sent: map[string]uint64{"a": 100, "b": 50, "gone": 9}}
	v := serverUsage{cpu: 3 * time.Second, sent: map[string]uint64{"a": 160, "b": 50, "new": 7}}
	if cpu, sent, closed := u.until(v); cpu != 2*time.Second || sent != 67 || closed != 1 {
		t.Errorf("until = %v, %d, %d; want 2s, 67 (60 + 0 + 7), 1 closed", cpu, sent, closed)
	}
}
