package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
)

func consulBinary(t testing.TB) string {
	t.Helper()
	return Binary(t, ConsulBinEnv, "consul")
}

// ConsulBinEnv names the environment variable holding the Consul binary.
const ConsulBinEnv = "WAYFINDER_CONSUL_BIN"

// ConsulPorts are an agent's listening ports, all on 127.0.0.1. They are
// chosen once and kept across restarts so that clients reconnect to the
// same address.
type ConsulPorts struct {
	HTTP, HTTPS, DNS, SerfLAN, SerfWAN, Server, GRPC int
}

// ConsulTLS enables HTTPS on the agent's HTTP API (and disables plain
// HTTP) with the given PEM files.
type ConsulTLS struct {
	CAFile, CertFile, KeyFile string
}

// ConsulOptions configure an agent started by StartConsulWith.
type ConsulOptions struct {
	// Server runs a real server with a data dir instead of -dev, so
	// state survives Restart. Dev agents keep everything in memory and
	// forget all registrations when restarted.
	Server bool
	// BootstrapExpect is passed to -bootstrap-expect for servers (1 if 0).
	BootstrapExpect int
	// RetryJoin lists serf LAN addresses to join.
	RetryJoin []string
	// Datacenter is the agent's datacenter ("dc1" if empty).
	Datacenter string
	// HCL is appended to the agent's configuration, e.g. an acl block.
	HCL string
	// TLS serves the HTTP API over HTTPS only.
	TLS *ConsulTLS
	// NoWaitLeader returns as soon as the HTTP API answers, for cluster
	// members whose leader appears only once enough of them run.
	NoWaitLeader bool
	// Client runs a client agent (neither -server nor -dev) with a data
	// dir, which joins RetryJoin: the agent applications talk to, which
	// forwards reads to the servers. Start returns once it knows the
	// leader. Server must be false.
	Client bool
	// NoStreamingBackend sets use_streaming_backend = false: the agent
	// answers blocking health queries with blocking RPCs to the servers
	// instead of its streaming view (Consul's default is true).
	NoStreamingBackend bool
}

// ConsulAgent is a Consul agent process started for a test.
type ConsulAgent struct {
	Name    string
	Ports   ConsulPorts
	DataDir string // empty for dev agents
	opts    ConsulOptions
	bin     string
	cfgFile string
	logFile string
	client  *http.Client

	mu     sync.Mutex // guards cmd, done and paused
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has exited
	paused bool
}

// StartConsul starts a dev agent on free loopback ports and waits until
// it has a leader. It is killed at the end of the test.
func StartConsul(t testing.TB) *ConsulAgent {
	t.Helper()
	return StartConsulWith(t, ConsulOptions{})
}

// StartConsulWith starts an agent configured by o.
func StartConsulWith(t testing.TB, o ConsulOptions) *ConsulAgent {
	t.Helper()
	bin := consulBinary(t)
	dir := t.TempDir()
	a := &ConsulAgent{
		Name:    fmt.Sprintf("node-%d", time.Now().UnixNano()%1e9),
		Ports:   ConsulPorts{HTTP: FreePort(t), DNS: FreePort(t), SerfLAN: FreePort(t), SerfWAN: FreePort(t), Server: FreePort(t), GRPC: FreePort(t)},
		opts:    o,
		bin:     bin,
		cfgFile: filepath.Join(dir, "agent.hcl"),
		logFile: filepath.Join(dir, "agent.log"),
		client:  &http.Client{Timeout: 2 * time.Second},
	}
	if o.Server && o.Client {
		t.Fatalf("testenv: ConsulOptions: Server and Client are exclusive")
	}
	if o.Server || o.Client {
		a.DataDir = filepath.Join(dir, "data")
		if err := os.MkdirAll(a.DataDir, 0o700); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	if o.TLS != nil {
		a.Ports.HTTPS = FreePort(t)
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(o.TLS.CAFile)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("testenv: reading CA %s: %v", o.TLS.CAFile, err)
		}
		a.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	if err := os.WriteFile(a.cfgFile, []byte(a.config()), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(a.Kill)
	a.Start(t)
	return a
}

func (a *ConsulAgent) config() string {
	p := a.Ports
	http := p.HTTP
	if a.opts.TLS != nil {
		http = -1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "node_name = %q\n", a.Name)
	fmt.Fprintf(&b, "datacenter = %q\n", or(a.opts.Datacenter, "dc1"))
	fmt.Fprintf(&b, "bind_addr = \"127.0.0.1\"\nclient_addr = \"127.0.0.1\"\nadvertise_addr = \"127.0.0.1\"\n")
	fmt.Fprintf(&b, "log_level = \"info\"\ndisable_update_check = true\n")
	fmt.Fprintf(&b, "ports {\n http = %d\n https = %d\n dns = %d\n serf_lan = %d\n serf_wan = %d\n server = %d\n grpc = %d\n grpc_tls = -1\n}\n",
		http, or0(p.HTTPS, -1), p.DNS, p.SerfLAN, p.SerfWAN, p.Server, p.GRPC)
	if a.opts.Server {
		// Fast failure detection so that a stopped leader is replaced in
		// a few seconds, as the dev agent's timing is.
		fmt.Fprintf(&b, "performance { raft_multiplier = 1 }\n")
	}
	if a.opts.NoStreamingBackend {
		b.WriteString("use_streaming_backend = false\n")
	}
	if t := a.opts.TLS; t != nil {
		fmt.Fprintf(&b, "tls {\n defaults {\n  ca_file = %q\n  cert_file = %q\n  key_file = %q\n  verify_incoming = false\n }\n}\n", t.CAFile, t.CertFile, t.KeyFile)
	}
	b.WriteString(a.opts.HCL)
	return b.String()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func or0(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

// HTTPAddr is host:port of the HTTP (or, with TLS, HTTPS) API.
func (a *ConsulAgent) HTTPAddr() string {
	if a.opts.TLS != nil {
		return fmt.Sprintf("127.0.0.1:%d", a.Ports.HTTPS)
	}
	return fmt.Sprintf("127.0.0.1:%d", a.Ports.HTTP)
}

// URL is the API's base URL, http:// or https://.
func (a *ConsulAgent) URL() string {
	if a.opts.TLS != nil {
		return "https://" + a.HTTPAddr()
	}
	return "http://" + a.HTTPAddr()
}

// SerfLANAddr is the gossip address other agents join.
func (a *ConsulAgent) SerfLANAddr() string { return fmt.Sprintf("127.0.0.1:%d", a.Ports.SerfLAN) }

// ServerAddr is the server RPC address, the form /v1/status/leader reports.
func (a *ConsulAgent) ServerAddr() string { return fmt.Sprintf("127.0.0.1:%d", a.Ports.Server) }

// Start starts the agent process on its ports and data dir, and waits
// until it is ready. It fails the test if the agent is running.
func (a *ConsulAgent) Start(t testing.TB) {
	t.Helper()
	a.mu.Lock()
	if a.cmd != nil {
		a.mu.Unlock()
		t.Fatalf("testenv: consul %s already running", a.Name)
	}
	args := []string{"agent", "-config-file", a.cfgFile}
	switch {
	case a.opts.Server:
		args = append(args, "-server", "-data-dir", a.DataDir, "-bootstrap-expect", fmt.Sprint(or0(a.opts.BootstrapExpect, 1)))
	case a.opts.Client:
		args = append(args, "-data-dir", a.DataDir)
	default:
		args = append(args, "-dev")
	}
	if a.opts.Server || a.opts.Client {
		for _, j := range a.opts.RetryJoin {
			args = append(args, "-retry-join", j, "-retry-interval", "1s")
		}
	}
	log, err := os.OpenFile(a.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		a.mu.Unlock()
		t.Fatalf("testenv: %v", err)
	}
	cmd := exec.Command(a.bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		a.mu.Unlock()
		t.Fatalf("testenv: starting consul: %v", err)
	}
	done := make(chan struct{})
	go func() { // owned by the agent: ends when the process exits
		cmd.Wait()
		log.Close()
		close(done)
	}()
	a.cmd, a.done = cmd, done
	a.mu.Unlock()
	if a.opts.NoWaitLeader {
		a.waitHTTP(t, done, false)
	} else {
		a.waitHTTP(t, done, true)
	}
}

// waitHTTP polls the API until it answers (and, if leader, names a leader).
func (a *ConsulAgent) waitHTTP(t testing.TB, done <-chan struct{}, leader bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		l, err := a.leader()
		if err == nil && (!leader || l != "") {
			return
		}
		select {
		case <-done:
			t.Fatalf("testenv: consul %s exited during start-up; log:\n%s", a.Name, a.LogTail(40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: consul %s not ready after 60s (last: %q, %v); log:\n%s", a.Name, l, err, a.LogTail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitLeader waits until the agent knows a cluster leader.
func (a *ConsulAgent) WaitLeader(t testing.TB) string {
	t.Helper()
	var l string
	var err error
	if !wait.Until(60*time.Second, func() bool { l, err = a.leader(); return err == nil && l != "" }) {
		t.Fatalf("testenv: consul %s has no leader after 60s (%v)", a.Name, err)
	}
	return l
}

func (a *ConsulAgent) leader() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", a.URL()+"/v1/status/leader", nil)
	resp, err := a.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return strings.Trim(strings.TrimSpace(string(b)), `"`), nil
}

// Stop stops the agent with SIGTERM and waits for it to exit (SIGKILL
// after 10 s). It is a no-op if the agent is not running.
func (a *ConsulAgent) Stop() { a.signal(syscall.SIGTERM, 10*time.Second) }

// Kill kills the agent with SIGKILL, as a crash would, and waits for it.
func (a *ConsulAgent) Kill() { a.signal(syscall.SIGKILL, 0) }

// Restart stops the agent and starts it again on the same ports and data
// dir. A dev agent comes back empty.
func (a *ConsulAgent) Restart(t testing.TB) {
	t.Helper()
	a.Stop()
	a.Start(t)
}

// Pause freezes the agent with SIGSTOP: its sockets stay open and the
// kernel still accepts connections, but it answers nothing, like a hung
// process. A blocking query in flight hangs until its HTTP timeout.
func (a *ConsulAgent) Pause(t testing.TB) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil || a.paused {
		return
	}
	if err := signalStop(a.cmd); err != nil {
		t.Fatalf("testenv: pause %s: %v", a.Name, err)
	}
	a.paused = true
}

// Resume undoes Pause with SIGCONT.
func (a *ConsulAgent) Resume(t testing.TB) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil || !a.paused {
		return
	}
	signalCont(a.cmd)
	a.paused = false
}

// Pid is the agent's process ID, or 0 if it is not running.
func (a *ConsulAgent) Pid() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return 0
	}
	return a.cmd.Process.Pid
}

// Running reports whether the process is running.
func (a *ConsulAgent) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cmd != nil
}

func (a *ConsulAgent) signal(sig syscall.Signal, grace time.Duration) {
	a.mu.Lock()
	cmd, done, paused := a.cmd, a.done, a.paused
	a.cmd, a.done, a.paused = nil, nil, false
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	if paused {
		signalCont(cmd) // a stopped process cannot act on SIGTERM
	}
	if grace > 0 {
		select {
		case <-done:
			return
		case <-time.After(grace):
			cmd.Process.Kill()
		}
	}
	<-done
}

// LogTail returns the last n lines of the agent's log.
func (a *ConsulAgent) LogTail(n int) string {
	b, _ := os.ReadFile(a.logFile)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ConsulCluster is a cluster of Consul servers on loopback.
type ConsulCluster struct {
	Agents []*ConsulAgent
}

// StartConsulCluster starts n servers (-bootstrap-expect n) that join
// each other, and waits until all of them know the leader.
func StartConsulCluster(t testing.TB, n int) *ConsulCluster {
	t.Helper()
	// Serf ports are needed before any agent starts, for -retry-join, so
	// pre-pick them and hand each agent the others'.
	serf := make([]int, n)
	for i := range serf {
		serf[i] = FreePort(t)
	}
	c := &ConsulCluster{}
	for i := range n {
		var join []string
		for j, p := range serf {
			if j != i {
				join = append(join, fmt.Sprintf("127.0.0.1:%d", p))
			}
		}
		a := startClusterMember(t, ConsulOptions{Server: true, BootstrapExpect: n, RetryJoin: join, NoWaitLeader: true}, serf[i], i)
		c.Agents = append(c.Agents, a)
	}
	for _, a := range c.Agents {
		a.WaitLeader(t)
	}
	return c
}

func startClusterMember(t testing.TB, o ConsulOptions, serfPort, i int) *ConsulAgent {
	t.Helper()
	bin := consulBinary(t)
	dir := t.TempDir()
	a := &ConsulAgent{
		Name:    fmt.Sprintf("server-%d", i),
		Ports:   ConsulPorts{HTTP: FreePort(t), DNS: FreePort(t), SerfLAN: serfPort, SerfWAN: FreePort(t), Server: FreePort(t), GRPC: FreePort(t)},
		DataDir: filepath.Join(dir, "data"),
		opts:    o,
		bin:     bin,
		cfgFile: filepath.Join(dir, "agent.hcl"),
		logFile: filepath.Join(dir, "agent.log"),
		client:  &http.Client{Timeout: 2 * time.Second},
	}
	if err := os.MkdirAll(a.DataDir, 0o700); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.WriteFile(a.cfgFile, []byte(a.config()), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(a.Kill)
	a.Start(t)
	return a
}

// Leader returns the running agent that is the current leader, waiting
// until one is elected.
func (c *ConsulCluster) Leader(t testing.TB) *ConsulAgent {
	t.Helper()
	var leader *ConsulAgent
	if !wait.Until(60*time.Second, func() bool { leader = c.leader(); return leader != nil }) {
		t.Fatalf("testenv: no leader among %d servers after 60s", len(c.Agents))
	}
	return leader
}

// leader returns the running agent a running agent names as the leader,
// or nil.
func (c *ConsulCluster) leader() *ConsulAgent {
	for _, a := range c.Agents {
		if !a.Running() {
			continue
		}
		l, err := a.leader()
		if err != nil || l == "" {
			continue
		}
		for _, b := range c.Agents {
			if b.ServerAddr() == l && b.Running() {
				return b
			}
		}
	}
	return nil
}

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// FreePort returns a loopback port that was free for TCP and UDP a moment
// ago (serf uses both) and that this process has not handed out before,
// so the many ports of a cluster never collide with each other, nor has
// any other live test process (reservePort), so a server stopped for a
// restart finds its ports still free.
func FreePort(t testing.TB) int {
	t.Helper()
	lo, hi := portRange()
	for range 1000 {
		port := 0 // 0: let the kernel choose (no range outside its ephemeral one)
		if hi > lo {
			port = lo + rand.IntN(hi-lo)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			if port == 0 {
				t.Fatalf("testenv: %v", err)
			}
			continue
		}
		port = l.Addr().(*net.TCPAddr).Port
		u, uerr := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if uerr != nil {
			continue
		}
		u.Close()
		portsMu.Lock()
		dup := given[port]
		given[port] = true
		portsMu.Unlock()
		if !dup && reservePort(port) {
			return port
		}
	}
	t.Fatalf("testenv: no free loopback port")
	return 0
}

// portRange returns ports below the kernel's ephemeral range: a server
// restarted on its old ports would otherwise find one taken as the
// source port of some other process's outgoing connection ("bind:
// address already in use"), which the kernel hands out only from the
// ephemeral range. It returns lo == hi when there is no room.
func portRange() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 0, 0
	}
	first, err := strconv.Atoi(f[0])
	if err != nil || first < 12000 {
		return 0, 0
	}
	return max(10000, first-15000), first
}
