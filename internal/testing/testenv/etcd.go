package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// EtcdBinEnv names the environment variable holding the etcd binary.
const EtcdBinEnv = "WAYFINDER_ETCD_BIN"

// etcdStartTimeout bounds how long a member may take to become healthy.
// A cold start under -race on a shared 2-core machine takes 1–3 s.
const etcdStartTimeout = 30 * time.Second

// EtcdOption configures StartEtcd and StartEtcdCluster.
type EtcdOption func(*etcdConfig)

type etcdConfig struct {
	tls   bool
	extra []string
}

// WithEtcdTLS serves clients over TLS with certificates generated for the
// test, and requires client certificates. Read them from Member.TLS.
func WithEtcdTLS() EtcdOption { return func(c *etcdConfig) { c.tls = true } }

// WithEtcdFlags appends raw flags to the etcd command line.
func WithEtcdFlags(flags ...string) EtcdOption {
	return func(c *etcdConfig) { c.extra = append(c.extra, flags...) }
}

// EtcdMember is one etcd server process.
//
// mu guards cmd, exited and paused: the fault methods may be called from
// any goroutine of the test.
type EtcdMember struct {
	Name       string
	ClientAddr string // host:port for clients
	PeerURL    string
	MetricsURL string // plain HTTP, serves /health and /metrics even with client TLS
	TLS        *EtcdTLS

	t       testing.TB
	bin     string
	dir     string
	args    []string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	paused bool
}

// Endpoint returns the member's client endpoint as host:port.
func (m *EtcdMember) Endpoint() string { return m.ClientAddr }

// EtcdCluster is a set of members forming one etcd cluster.
type EtcdCluster struct {
	Members []*EtcdMember
}

// Endpoints returns every member's client endpoint.
func (c *EtcdCluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.ClientAddr
	}
	return out
}

// StartEtcd starts a single-member etcd on free loopback ports with its
// data in a temporary directory, waits until it is healthy and stops it
// when the test ends. It fails the test if the binary is missing.
func StartEtcd(t testing.TB, opts ...EtcdOption) *EtcdMember {
	t.Helper()
	return StartEtcdCluster(t, 1, opts...).Members[0]
}

// StartEtcdCluster starts an n-member cluster, like StartEtcd.
func StartEtcdCluster(t testing.TB, n int, opts ...EtcdOption) *EtcdCluster {
	t.Helper()
	var cfg etcdConfig
	for _, o := range opts {
		o(&cfg)
	}
	bin := Binary(t, EtcdBinEnv, "etcd")
	root := t.TempDir()
	var tlsFiles *EtcdTLS
	if cfg.tls {
		tlsFiles = NewEtcdTLS(t, filepath.Join(root, "pki"))
	}
	// Ports come from the kernel: bind :0, note the port, release it. Another
	// process could grab one in between; the start is then retried once
	// with fresh ports.
	for attempt := 0; ; attempt++ {
		c, err := startCluster(t, bin, filepath.Join(root, fmt.Sprintf("try%d", attempt)), n, cfg, tlsFiles)
		if err == nil {
			return c
		}
		if attempt == 1 {
			t.Fatalf("testenv: start etcd: %v", err)
		}
		t.Logf("testenv: start etcd: %v; retrying with new ports", err)
	}
}

func startCluster(t testing.TB, bin, root string, n int, cfg etcdConfig, tlsFiles *EtcdTLS) (*EtcdCluster, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	c := &EtcdCluster{}
	var initial []string
	for i := range n {
		m := &EtcdMember{
			Name:       fmt.Sprintf("m%d", i),
			ClientAddr: freeAddr(t),
			PeerURL:    "http://" + freeAddr(t),
			MetricsURL: "http://" + freeAddr(t),
			TLS:        tlsFiles,
			t:          t,
			bin:        bin,
			dir:        filepath.Join(root, fmt.Sprintf("m%d", i)),
		}
		m.logPath = m.dir + ".log"
		initial = append(initial, m.Name+"="+m.PeerURL)
		c.Members = append(c.Members, m)
	}
	clientScheme := "http"
	if tlsFiles != nil {
		clientScheme = "https"
	}
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name,
			"--data-dir", m.dir,
			"--listen-client-urls", clientScheme + "://" + m.ClientAddr,
			"--advertise-client-urls", clientScheme + "://" + m.ClientAddr,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--listen-metrics-urls", m.MetricsURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", fmt.Sprintf("wayfinder-%p", c),
			"--log-level", "warn",
			// Tests need durability across Kill/Restart only within one
			// machine's page cache; fsync would make them slow.
			"--unsafe-no-fsync",
		}
		if tlsFiles != nil {
			m.args = append(m.args,
				"--cert-file", tlsFiles.ServerCert, "--key-file", tlsFiles.ServerKey,
				"--trusted-ca-file", tlsFiles.CACert, "--client-cert-auth")
		}
		m.args = append(m.args, cfg.extra...)
		t.Cleanup(m.cleanup)
	}
	for _, m := range c.Members {
		if err := m.start(); err != nil {
			return nil, err
		}
	}
	for _, m := range c.Members {
		if err := m.waitHealthy(etcdStartTimeout); err != nil {
			for _, m := range c.Members {
				m.kill()
			}
			return nil, err
		}
	}
	return c, nil
}

func freeAddr(t testing.TB) string {
	t.Helper()
	// Below the ephemeral range, so that Restart finds its ports free.
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

func (m *EtcdMember) start() error {
	log, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(m.bin, m.args...)
	cmd.Stdout, cmd.Stderr = log, log
	setPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("%s: %w", m.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(exited)
	}()
	m.mu.Lock()
	m.cmd, m.exited, m.paused = cmd, exited, false
	m.mu.Unlock()
	return nil
}

// waitHealthy polls /health until the member reports it has a leader and
// serves requests.
func (m *EtcdMember) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	var last string
	for {
		m.mu.Lock()
		exited := m.exited
		m.mu.Unlock()
		select {
		case <-exited:
			return fmt.Errorf("%s exited during start:\n%s", m.Name, m.logTail())
		default:
		}
		resp, err := client.Get(m.MetricsURL + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"health":"true"`)) {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after %v (last: %s):\n%s", m.Name, timeout, last, m.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitHealthy fails the test unless the member becomes healthy in time.
func (m *EtcdMember) WaitHealthy(t testing.TB) {
	t.Helper()
	if err := m.waitHealthy(etcdStartTimeout); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// IsLeader reports whether the member is the raft leader, from its metrics.
// A member that does not answer is not the leader.
func (m *EtcdMember) IsLeader() bool {
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get(m.MetricsURL + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "etcd_server_is_leader ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "etcd_server_is_leader ")) == "1"
		}
	}
	return false
}

// Leader polls until exactly one running member says it leads, and
// returns it.
func (c *EtcdCluster) Leader(t testing.TB) *EtcdMember {
	t.Helper()
	deadline := time.Now().Add(etcdStartTimeout)
	for {
		var leaders []*EtcdMember
		for _, m := range c.Members {
			if m.Running() && m.IsLeader() {
				leaders = append(leaders, m)
			}
		}
		if len(leaders) == 1 {
			return leaders[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: no single etcd leader after %v (%d claim it)", etcdStartTimeout, len(leaders))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Pid is the member's process ID, or 0 if it is not running.
func (m *EtcdMember) Pid() int {
	if !m.Running() {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd.Process.Pid
}

// Running reports whether the member's process is alive (it may be paused).
func (m *EtcdMember) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// Kill stops the member at once with SIGKILL and waits for it to exit.
func (m *EtcdMember) Kill(t testing.TB) {
	t.Helper()
	m.kill()
}

// Stop stops the member gracefully (SIGTERM) and waits for it to exit.
func (m *EtcdMember) Stop(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	m.Resume(t)
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		m.kill()
	}
}

// Restart starts a stopped or killed member again on the same ports and
// data directory, and waits until it is healthy.
func (m *EtcdMember) Restart(t testing.TB) {
	t.Helper()
	if m.Running() {
		t.Fatalf("testenv: Restart(%s) while it runs", m.Name)
	}
	if err := m.start(); err != nil {
		t.Fatalf("testenv: restart %s: %v", m.Name, err)
	}
	m.WaitHealthy(t)
}

func (m *EtcdMember) kill() {
	m.mu.Lock()
	cmd, exited, paused := m.cmd, m.exited, m.paused
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	if paused {
		signalCont(cmd)
	}
	<-exited
}

func (m *EtcdMember) cleanup() {
	m.kill()
	if m.t.Failed() {
		m.t.Logf("testenv: etcd %s log tail:\n%s", m.Name, m.logTail())
	}
}

func (m *EtcdMember) logTail() string {
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// Pause freezes the member with SIGSTOP: its sockets stay open but it
// answers nothing, like a hung process or a black-holed network.
func (m *EtcdMember) Pause(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil || m.paused {
		return
	}
	if err := signalStop(m.cmd); err != nil {
		t.Fatalf("testenv: pause %s: %v", m.Name, err)
	}
	m.paused = true
}

// Resume undoes Pause with SIGCONT.
func (m *EtcdMember) Resume(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil || !m.paused {
		return
	}
	signalCont(m.cmd)
	m.paused = false
}

// EtcdTLS holds PEM files generated for one test: a CA, a server
// certificate for 127.0.0.1 and localhost, and a client certificate.
type EtcdTLS struct {
	CACert, ServerCert, ServerKey, ClientCert, ClientKey string
}

// ClientConfig returns a TLS configuration that trusts the CA and presents
// the client certificate.
func (e *EtcdTLS) ClientConfig(t testing.TB) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(e.CACert)
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("testenv: read CA %s: %v", e.CACert, err)
	}
	cert, err := tls.LoadX509KeyPair(e.ClientCert, e.ClientKey)
	if err != nil {
		t.Fatalf("testenv: client key pair: %v", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// NewEtcdTLS generates a CA and certificates into dir.
func NewEtcdTLS(t testing.TB, dir string) *EtcdTLS {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "wayfinder test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	srvDER, srvKey := leaf(2, "etcd server", x509.ExtKeyUsageServerAuth)
	cliDER, cliKey := leaf(3, "root", x509.ExtKeyUsageClientAuth)
	out := &EtcdTLS{
		CACert:     filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
	}
	writePEM(t, out.CACert, "CERTIFICATE", caDER)
	writePEM(t, out.ServerCert, "CERTIFICATE", srvDER)
	writeKey(t, out.ServerKey, srvKey)
	writePEM(t, out.ClientCert, "CERTIFICATE", cliDER)
	writeKey(t, out.ClientKey, cliKey)
	return out
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeKey(t testing.TB, path string, k *ecdsa.PrivateKey) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "EC PRIVATE KEY", der)
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// ctxTimeout is a small helper for the etcd admin calls below.
func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
