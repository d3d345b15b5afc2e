package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// KubeAPIServerBinEnv names the environment variable holding the
// kube-apiserver binary that `make kube-apiserver` builds.
const KubeAPIServerBinEnv = "WAYFINDER_KUBE_APISERVER_BIN"

// kubeStartTimeout bounds how long the API server may take to report
// /readyz ok: about 10 s on an idle machine, much more next to -race
// tests on two shared cores.
const kubeStartTimeout = 90 * time.Second

// Tokens of the users the test API server knows (its --token-auth-file).
// They are test fixtures, valid only for servers started here.
const (
	// KubeAdminToken authenticates as "wayfinder-admin" in system:masters:
	// allowed everything, under RBAC too.
	KubeAdminToken = "wayfinder-admin-token"
	// KubeNobodyToken authenticates as "wayfinder-nobody", in no group: under
	// RBAC it may do nothing a test has not granted it.
	KubeNobodyToken = "wayfinder-nobody-token"
)

// KubeOption configures StartKubeAPIServer.
type KubeOption func(*kubeConfig)

type kubeConfig struct {
	etcd  *EtcdMember
	rbac  bool
	extra []string
}

// WithKubeEtcd runs the API server against m instead of an etcd of its
// own, so that a test can stop or compact the API server's storage.
func WithKubeEtcd(m *EtcdMember) KubeOption { return func(c *kubeConfig) { c.etcd = m } }

// WithKubeRBAC runs the API server with --authorization-mode=RBAC
// instead of AlwaysAllow.
func WithKubeRBAC() KubeOption { return func(c *kubeConfig) { c.rbac = true } }

// WithKubeFlags appends raw flags to the kube-apiserver command line.
func WithKubeFlags(flags ...string) KubeOption {
	return func(c *kubeConfig) { c.extra = append(c.extra, flags...) }
}

// KubeAPIServer is a kube-apiserver process started for a test, on
// 127.0.0.1 with a self-signed certificate, over the project's etcd. No
// controller-manager runs: tests write EndpointSlices themselves.
//
// mu guards cmd and exited.
type KubeAPIServer struct {
	// URL is https://127.0.0.1:<port>.
	URL string
	// CAData is the PEM bundle that verifies the server's certificate.
	CAData []byte
	// Etcd is the storage the server runs on.
	Etcd *EtcdMember

	t       testing.TB
	bin     string
	dir     string
	args    []string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartKubeAPIServer starts kube-apiserver over a fresh etcd (or the one
// given WithKubeEtcd), waits until /readyz is ok and stops it when the
// test ends. It fails the test if the binary is missing.
func StartKubeAPIServer(t testing.TB, opts ...KubeOption) *KubeAPIServer {
	t.Helper()
	var cfg kubeConfig
	for _, o := range opts {
		o(&cfg)
	}
	bin := Binary(t, KubeAPIServerBinEnv, "kube-apiserver")
	if cfg.etcd == nil {
		cfg.etcd = StartEtcd(t)
	}
	dir := t.TempDir()
	saKey, saPub := writeServiceAccountKey(t, dir)
	tokens := filepath.Join(dir, "tokens.csv")
	tokenCSV := KubeAdminToken + ",wayfinder-admin,uid-admin,\"system:masters\"\n" +
		KubeNobodyToken + ",wayfinder-nobody,uid-nobody\n"
	if err := os.WriteFile(tokens, []byte(tokenCSV), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	authz := "AlwaysAllow"
	if cfg.rbac {
		authz = "RBAC"
	}
	port := FreePort(t)
	s := &KubeAPIServer{
		URL:     fmt.Sprintf("https://127.0.0.1:%d", port),
		Etcd:    cfg.etcd,
		t:       t,
		bin:     bin,
		dir:     dir,
		logPath: filepath.Join(dir, "kube-apiserver.log"),
	}
	s.args = []string{
		"--etcd-servers", "http://" + cfg.etcd.ClientAddr,
		// Each server has its own keys in a shared etcd.
		"--etcd-prefix", "/registry-" + filepath.Base(dir),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", saPub,
		"--service-account-signing-key-file", saKey,
		"--authorization-mode", authz,
		"--token-auth-file", tokens,
		"--secure-port", fmt.Sprint(port),
		"--bind-address", "127.0.0.1",
		"--cert-dir", filepath.Join(dir, "certs"),
		"--service-cluster-ip-range", "10.96.0.0/16",
		// The default reconciler refuses a loopback advertise address.
		"--endpoint-reconciler-type", "none",
		"--profiling=false",
		"-v", "1",
	}
	s.args = append(s.args, cfg.extra...)
	t.Cleanup(s.Stop)
	s.Start(t)
	ca, err := os.ReadFile(filepath.Join(dir, "certs", "apiserver.crt"))
	if err != nil {
		t.Fatalf("testenv: kube-apiserver wrote no certificate: %v", err)
	}
	s.CAData = ca
	return s
}

// writeServiceAccountKey writes an ECDSA key pair for the server's
// service-account tokens and returns the paths of the private and the
// public key.
func writeServiceAccountKey(t testing.TB, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	keyPath, pubPath := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return keyPath, pubPath
}

// Start starts the server (again, after Stop) and waits for /readyz.
func (s *KubeAPIServer) Start(t testing.TB) {
	t.Helper()
	log, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = log, log
	setPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("testenv: start kube-apiserver: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	if err := s.waitReady(exited); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

func (s *KubeAPIServer) waitReady(exited <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		// The certificate does not exist before the server writes it;
		// readiness, not identity, is what is checked here.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(kubeStartTimeout)
	var last string
	for {
		select {
		case <-exited:
			return fmt.Errorf("kube-apiserver exited during start:\n%s", s.LogTail(40))
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+KubeAdminToken)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready after %v (last: %s):\n%s", kubeStartTimeout, last, s.LogTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the server gracefully (SIGTERM, then SIGKILL after 15 s)
// and waits for it to exit. It may be called more than once.
func (s *KubeAPIServer) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Restart stops and starts the server on the same port and storage.
func (s *KubeAPIServer) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.Start(t)
}

// Kubeconfig writes a kubeconfig for the server that authenticates with
// token and returns its path.
func (s *KubeAPIServer) Kubeconfig(t testing.TB, token string) string {
	t.Helper()
	return s.KubeconfigFor(t, s.URL, token)
}

// KubeconfigFor is Kubeconfig with another server URL, such as that of a
// Proxy in front of the server; the certificate is still the server's,
// whose names include 127.0.0.1.
func (s *KubeAPIServer) KubeconfigFor(t testing.TB, serverURL, token string) string {
	t.Helper()
	cfg := strings.Join([]string{
		"apiVersion: v1",
		"kind: Config",
		"clusters:",
		"- name: test",
		"  cluster:",
		"    server: " + serverURL,
		"    certificate-authority-data: " + base64.StdEncoding.EncodeToString(s.CAData),
		"users:",
		"- name: test",
		"  user:",
		"    token: " + token,
		"contexts:",
		"- name: test",
		"  context:",
		"    cluster: test",
		"    user: test",
		"    namespace: default",
		"current-context: test",
		"",
	}, "\n")
	f, err := os.CreateTemp(t.TempDir(), "kubeconfig-*.yaml")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(cfg); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return f.Name()
}

// LogTail returns the last n lines of the server's log.
func (s *KubeAPIServer) LogTail(n int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
