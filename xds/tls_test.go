package xds_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

// TestTLS: a server with WithServerCredentials serves ADS over TLS; the
// grpc-go client whose bootstrap names the CA (BootstrapConfig.CAFile,
// "tls" channel credentials) reaches every instance, and a client whose
// bootstrap says insecure gets no resource: every call fails and it
// opens no ADS stream.
func TestTLS(t *testing.T) {
	certFile, keyFile := selfSigned(t, x509.ExtKeyUsageServerAuth)
	creds, err := credentials.NewServerTLSFromFile(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	startHello(t, reg, "a")
	startHello(t, reg, "b")
	s, addr, _ := startXDS(t, reg, "127.0.0.1:0", xds.WithServerCredentials(creds))

	c := startBootstrap(t, "go-tls", xds.BootstrapConfig{Server: addr, CAFile: certFile},
		exec.Command(goClient, "-target", "xds:///hello"), false)
	c.waitPicks(t, 0, "a", "b")

	plain := startBootstrap(t, "go-insecure", xds.BootstrapConfig{Server: addr},
		exec.Command(goClient, "-target", "xds:///hello", "-wait", "2s"), true)
	wait.For(t, 60*time.Second, "3 failed calls of the insecure client", func() bool {
		return len(plain.failures()) >= 3 || plain.exited()
	})
	if n := plain.calls(); n != 0 || plain.exited() {
		t.Errorf("insecure client: %d calls served (exited: %v), want 0 and running; stderr:\n%s", n, plain.exited(), plain.stderr.String())
	}
	if st := s.Stats(); st.Streams != 1 {
		t.Errorf("Stats().Streams = %d, want 1 (the TLS client's)", st.Streams)
	}
	t.Logf("insecure client's first failure: %s", plain.failures()[0])
}

// TestMTLS: a server that requires client certificates (mTLS) serves the
// grpc-go client whose bootstrap names its certificate and key
// (certificate_file, private_key_file), and not one that has only the
// CA.
func TestMTLS(t *testing.T) {
	certFile, keyFile := selfSigned(t, x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := selfSigned(t, x509.ExtKeyUsageClientAuth)
	serverCert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(clientCert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
	store := memory.NewStore()
	reg := store.Open()
	t.Cleanup(func() { reg.Close() })
	startHello(t, reg, "a")
	s, addr, _ := startXDS(t, reg, "127.0.0.1:0", xds.WithServerCredentials(creds))

	c := startBootstrap(t, "go-mtls", xds.BootstrapConfig{Server: addr, CAFile: certFile, CertFile: clientCert, KeyFile: clientKey},
		exec.Command(goClient, "-target", "xds:///hello"), false)
	c.waitPicks(t, 0, "a")

	anon := startBootstrap(t, "go-no-cert", xds.BootstrapConfig{Server: addr, CAFile: certFile},
		exec.Command(goClient, "-target", "xds:///hello", "-wait", "2s"), true)
	wait.For(t, 60*time.Second, "3 failed calls of the client without a certificate", func() bool {
		return len(anon.failures()) >= 3 || anon.exited()
	})
	if n := anon.calls(); n != 0 || anon.exited() {
		t.Errorf("client without a certificate: %d calls served (exited: %v), want 0 and running; stderr:\n%s", n, anon.exited(), anon.stderr.String())
	}
	if st := s.Stats(); st.Streams != 1 {
		t.Errorf("Stats().Streams = %d, want 1 (the mTLS client's)", st.Streams)
	}
	t.Logf("the client without a certificate, first failure: %s", anon.failures()[0])
}

// selfSigned writes a self-signed certificate for 127.0.0.1 with usage,
// its own CA, and its key, and returns their paths.
func selfSigned(t testing.TB, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "wayfinder-xds test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
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
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
