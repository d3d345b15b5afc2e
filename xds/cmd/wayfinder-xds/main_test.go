package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/leak"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

func TestMain(m *testing.M) { leak.VerifyTestMain(m, func() {}) }

func TestBootstrap(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"bootstrap", "-server", "127.0.0.1:18000", "-node", "n1"}, &out, &errOut); code != 0 {
		t.Fatalf("run(bootstrap) = %d, stderr %s", code, errOut.String())
	}
	var b struct {
		Servers []struct {
			URI string `json:"server_uri"`
		} `json:"xds_servers"`
		Node struct{ ID string } `json:"node"`
	}
	if err := json.Unmarshal(out.Bytes(), &b); err != nil || len(b.Servers) != 1 || b.Servers[0].URI != "127.0.0.1:18000" || b.Node.ID != "n1" {
		t.Errorf("bootstrap output %s: %+v, %v", out.String(), b, err)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{},                               // no -registry
		{"-registry", "mem://", "extra"}, // stray argument
		{"-registry", "mem://", "-timeout", "0s"},
		{"bootstrap", "-server", "no-port"},
		{"-registry", "mem://", "-tls-cert", "cert.pem"}, // no -tls-key
		{"-registry", "mem://", "-tls-key", "key.pem"},
		{"-registry", "mem://", "-tls-client-ca", "ca.pem"},      // no -tls-cert
		{"bootstrap", "-tls-ca", "ca.pem", "-tls-cert", "c.pem"}, // no -tls-key
		{"-registry", "mem://", "-canary", "hello=v2"},
		{"-registry", "mem://", "-canary", "hello=v2:100"},
		{"-registry", "mem://", "-canary", "hello=v2:60,v3:40"}, // nothing left for the stable set
		{"-registry", "mem://", "-canary", "hello=v2:10,v2:5"},
		{"-registry", "mem://", "-canary", "hello=v2:10,"},
		{"-registry", "mem://", "-policy", "hello"},
		{"-registry", "mem://", "-policy", "hello=ring_hash:header"},
		{"-registry", "mem://", "-policy", "hello=ring_hash:header=X-User"},
		{"-registry", "mem://", "-policy", "hello=least_request:header=x-user"},
		{"-registry", "mem://", "-policy", "hello=least_request", "-policy", "hello=ring_hash"},
		{"-registry", "mem://", "-policy", "hello=least_request:choiceCount=1"},
		{"-registry", "mem://", "-policy", "hello=weighted_round_robin:blackoutPeriod=soon"},
		{"-registry", "mem://", "-policy", "hello=wayfinder_weighted_round_robin:defaultWeight=0"},
		{"-registry", "mem://", "-route", "hello"},
		{"-registry", "mem://", "-route", "hello=timeout=soon"},
		{"-registry", "mem://", "-route", "hello=retryOn=not-found"},
		{"-registry", "mem://", "-route", "hello=retries=2"}, // no code to retry on
		{"-registry", "mem://", "-route", "hello=retryOn=unavailable,retries=9"},
		{"-registry", "mem://", "-route", "hello=bogus=1"},
		{"-registry", "mem://", "-outlier", "hello"},
		{"-registry", "mem://", "-outlier", "hello=interval=5s"}, // nothing ejects
		{"-registry", "mem://", "-outlier", "hello=failurePercent=x"},
		{"-registry", "mem://", "-outlier", "hello=failurePercent=50,bogus=1"},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("run(%q) = %d, want 2; stderr %s", args, code, errOut.String())
		}
	}
}

// TestTLSFlags: bootstrap -tls-ca writes "tls" channel credentials with
// that CA file; -tls-cert and -tls-key serve TLS with that certificate
// (a handshake that trusts it succeeds), and files that do not load stop
// the command with status 1.
func TestTLSFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"bootstrap", "-server", "127.0.0.1:18000", "-tls-ca", "/etc/ca.pem"}, &out, &errOut); code != 0 {
		t.Fatalf("run(bootstrap -tls-ca) = %d, stderr %s", code, errOut.String())
	}
	var b struct {
		Servers []struct {
			Creds []struct {
				Type   string
				Config map[string]string
			} `json:"channel_creds"`
		} `json:"xds_servers"`
	}
	if err := json.Unmarshal(out.Bytes(), &b); err != nil || len(b.Servers) != 1 || len(b.Servers[0].Creds) != 1 ||
		b.Servers[0].Creds[0].Type != "tls" || b.Servers[0].Creds[0].Config["ca_certificate_file"] != "/etc/ca.pem" {
		t.Errorf("bootstrap -tls-ca output %s: want channel_creds [{tls, ca_certificate_file /etc/ca.pem}] (%v)", out.String(), err)
	}

	dir := t.TempDir()
	certPEM, keyPEM, pool := selfSigned(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"-registry", "mem://", "-listen", "127.0.0.1:0", "-tls-cert", keyFile, "-tls-key", keyFile}, &out, &errOut); code != 1 {
		t.Errorf("run(-tls-cert <a key>) = %d, want 1; stderr %s", code, errOut.String())
	}

	ctx, cancel := context.WithCancel(context.Background())
	var sout, serr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"-registry", "mem://", "-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile}, &sout, &serr)
	}()
	var addr string
	wait.For(t, 10*time.Second, "serving", func() bool {
		_, rest, ok := strings.Cut(serr.String(), "serving xDS\" listen=")
		addr, _, _ = strings.Cut(rest, " ")
		return ok
	})
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}})
	if err != nil {
		t.Errorf("TLS handshake with %s: %v", addr, err)
	} else {
		conn.Close()
	}
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("run() = %d, want 0; stderr %s", c, serr.String())
	}

	// -tls-client-ca: a client without a certificate is refused; one
	// with a certificate the CA file holds is served.
	ctx, cancel = context.WithCancel(context.Background())
	var mout, merr syncBuffer
	go func() {
		code <- run(ctx, []string{"-registry", "mem://", "-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile, "-tls-client-ca", certFile}, &mout, &merr)
	}()
	wait.For(t, 10*time.Second, "serving", func() bool {
		_, rest, ok := strings.Cut(merr.String(), "serving xDS\" listen=")
		addr, _, _ = strings.Cut(rest, " ")
		return ok
	})
	clientCert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	// TLS 1.3 reports a refused client certificate on the first read.
	handshake := func(certs []tls.Certificate) error {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, Certificates: certs, NextProtos: []string{"h2"}})
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")); err != nil {
			return err
		}
		_, err = conn.Read(make([]byte, 1))
		return err
	}
	if err := handshake(nil); err == nil {
		t.Errorf("-tls-client-ca: a client without a certificate was served")
	}
	if err := handshake([]tls.Certificate{clientCert}); err != nil {
		t.Errorf("-tls-client-ca: a client with a certificate: %v", err)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("run() = %d, want 0; stderr %s", c, merr.String())
	}
}

// selfSigned returns a self-signed certificate for 127.0.0.1, its key,
// and a pool that trusts it.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), pool
}

// syncBuffer is a bytes.Buffer safe for the server's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeUntilSignal: the server serves until its context ends (as on
// SIGINT), then stops with status 0.
func TestServeUntilSignal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"-registry", "mem://", "-listen", "127.0.0.1:0"}, &out, &errOut) }()
	wait.For(t, 10*time.Second, "serving", func() bool { return strings.Contains(errOut.String(), "serving xDS") })
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("run() = %d after the signal, want 0; stderr %s", c, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run() did not return after the signal")
	}
}

// TestKubernetesURL: the command links the Kubernetes backend (a module
// of its own): it serves a kubernetes:// registry, here a real
// kube-apiserver named by KUBECONFIG, which answers its first check.
func TestKubernetesURL(t *testing.T) {
	api := testenv.StartKubeAPIServer(t)
	t.Setenv("KUBECONFIG", api.Kubeconfig(t, testenv.KubeAdminToken))
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"-registry", "kubernetes:///?namespace=default", "-listen", "127.0.0.1:0"}, &out, &errOut)
	}()
	wait.For(t, time.Minute, "serving, or exiting", func() bool {
		return strings.Contains(errOut.String(), "serving xDS") || len(code) > 0
	})
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("run() = %d, want 0; stderr %s", c, errOut.String())
	}
	if s := errOut.String(); !strings.Contains(s, "serving xDS") || strings.Contains(s, "does not answer") {
		t.Errorf("stderr %s: want serving xDS, with the registry answering", s)
	}
}

func TestPolicyFlags(t *testing.T) {
	for v, want := range map[string]struct {
		svc    string
		p      xds.Policy
		header string
	}{
		"hello=ring_hash:header=x-user":     {"hello", xds.Policy{Name: "ring_hash"}, "x-user"},
		"hello=ring_hash":                   {"hello", xds.Policy{Name: "ring_hash"}, ""},
		"hello=least_request:choiceCount=3": {"hello", xds.Policy{Name: "least_request", Config: map[string]any{"choiceCount": 3}}, ""},
		"a=custom:n=1,b=true,s=x,f=0.5":     {"a", xds.Policy{Name: "custom", Config: map[string]any{"n": 1, "b": true, "s": "x", "f": 0.5}}, ""},
		"hello=weighted_round_robin:blackoutPeriod=1s,errorUtilizationPenalty=0.5": {"hello", xds.Policy{Name: "weighted_round_robin",
			Config: map[string]any{"blackoutPeriod": "1s", "errorUtilizationPenalty": 0.5}}, ""},
	} {
		svc, p, header, err := parsePolicy(v)
		if err != nil || svc != want.svc || header != want.header || !reflect.DeepEqual(p, want.p) {
			t.Errorf("parsePolicy(%q) = %q, %+v, %q, %v; want %q, %+v, %q", v, svc, p, header, err, want.svc, want.p, want.header)
		}
	}
	svc, od, err := parseOutlier("hello=interval=5s,failurePercent=50,successRateStdevFactor=1900,maxEjectionPercent=20")
	want := xds.OutlierDetection{Interval: 5 * time.Second, FailurePercent: 50, SuccessRateStdevFactor: 1900, MaxEjectionPercent: 20}
	if err != nil || svc != "hello" || od != want {
		t.Errorf("parseOutlier() = %q, %+v, %v; want hello, %+v", svc, od, err, want)
	}

	svc, r, err := parseRoute("hello=timeout=2s,retryOn=unavailable+resource-exhausted,retries=3,backoff=10ms,maxBackoff=1s")
	wantR := xds.Route{Timeout: 2 * time.Second, Retry: &xds.Retry{On: []codes.Code{codes.Unavailable, codes.ResourceExhausted}, NumRetries: 3, BaseBackoff: 10 * time.Millisecond, MaxBackoff: time.Second}}
	if err != nil || svc != "hello" || !reflect.DeepEqual(r, wantR) {
		t.Errorf("parseRoute() = %q, %+v, %v; want hello, %+v", svc, r, err, wantR)
	}
	if _, r, err := parseRoute("hello=timeout=1s"); err != nil || r != (xds.Route{Timeout: time.Second}) {
		t.Errorf("parseRoute(hello=timeout=1s) = %+v, %v", r, err)
	}

	// The server starts with them.
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"-registry", "mem://", "-listen", "127.0.0.1:0",
			"-policy", "hello=ring_hash:header=x-user", "-policy", "hello=least_request",
			"-outlier", "hello=failurePercent=50", "-route", "hello=timeout=2s,retryOn=unavailable", "-canary", "hello=v2:10,v3:5"}, &out, &errOut)
	}()
	wait.For(t, 10*time.Second, "serving", func() bool { return strings.Contains(errOut.String(), "serving xDS") })
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("run() = %d, want 0; stderr %s", c, errOut.String())
	}
}

// TestDebugFlag: -debug serves the debug page until the server stops.
func TestDebugFlag(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"-registry", "mem://", "-listen", "127.0.0.1:0", "-debug", "127.0.0.1:0"}, &out, &errOut)
	}()
	var url string
	wait.For(t, 10*time.Second, "the debug page's URL", func() bool {
		_, rest, ok := strings.Cut(errOut.String(), "url=")
		url, _, _ = strings.Cut(rest, "\n")
		return ok && strings.Contains(errOut.String(), "serving xDS")
	})
	resp, err := http.Get(url + "?format=json")
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	var v struct{ Streams *int }
	err = json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || v.Streams == nil {
		t.Errorf("GET %s = %d, %+v, %v; want 200 and the page's JSON", url, resp.StatusCode, v, err)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("run() = %d, want 0; stderr %s", c, errOut.String())
	}
	if resp, err := http.Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("GET %s after the server stopped: %s, want an error", url, resp.Status)
	}
}
