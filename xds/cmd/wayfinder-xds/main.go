// Command wayfinder-xds serves a registry to proxyless gRPC clients over
// xDS, and prints their bootstrap files.
//
//	wayfinder-xds -registry consul://127.0.0.1:8500 -listen 127.0.0.1:18000 [-timeout 10s] [-canary hello=v2:10,v3:5]
//		[-policy hello=ring_hash:header=x-user] [-outlier hello=failurePercent=50,interval=5s]
//		[-route hello=timeout=2s,retryOn=unavailable,retries=2] [-debug 127.0.0.1:18001]
//		[-tls-cert cert.pem -tls-key key.pem [-tls-client-ca clients-ca.pem]]
//	wayfinder-xds bootstrap -server 127.0.0.1:18000 [-node ID] [-zone Z] [-tls-ca ca.pem [-tls-cert c.pem -tls-key k.pem]]
//
// A client with that bootstrap (GRPC_XDS_BOOTSTRAP=<file> or
// GRPC_XDS_BOOTSTRAP_CONFIG=<json>) dials "xds:///<service>". Registry URLs
// are those of registry.Open and of the wayfinder command (consul://,
// etcd://, zk://, multi://, and kubernetes://, whose API server and
// credentials come from KUBECONFIG or the Pod's service account; mem://
// is in-process, so only useful in tests); secrets come from the
// backends' environment variables, never from URLs. -timeout bounds
// opening the registry and the first check that it answers; the server
// serves even while its registry is away, and the services' watches retry.
// "wayfinder xds ..." runs this command when it is in PATH. -debug
// host:port serves xds.DebugHandler's page (what each client was sent,
// accepted and rejected) at /debug/wayfinder/xds.
//
// -policy service=name[:key=value,...] sets a service's load-balancing
// policy (xds.WithPolicy); repeat it for one service to list policies in
// order of preference (round_robin always comes last). Keys are the
// policy's config: least_request takes choiceCount; ring_hash takes
// header, the request header calls are hashed on (xds.WithHashHeader);
// weighted_round_robin (weights from the servers' ORCA load reports)
// takes blackoutPeriod, weightExpirationPeriod, weightUpdatePeriod,
// oobReportingPeriod (durations such as 10s), enableOobLoadReport and
// errorUtilizationPenalty; any other name is a custom policy, such as
// wayfinder_weighted_round_robin for Go clients that import Wayfinder's
// balancer/wrr, whose config values are ints, numbers, true/false or
// strings. -outlier service=key=value,... turns on outlier
// detection (xds.WithOutlierDetection) with keys named after
// xds.OutlierDetection's fields: interval, baseEjectionTime,
// maxEjectionTime (durations such as 10s), maxEjectionPercent,
// failurePercent, failureMinimumHosts, failureRequestVolume,
// successRateStdevFactor, successRateMinimumHosts,
// successRateRequestVolume.
//
// -route service=key=value,... sets the timeout and retries of a
// service's calls (xds.WithRoute): timeout (a duration; every call's
// deadline is at most that), retryOn (the codes that retry, joined by
// '+': cancelled, deadline-exceeded, internal, resource-exhausted,
// unavailable), retries (1 to 4, default 1), backoff (the first retry's
// longest wait, default 25ms) and maxBackoff (default 10 times backoff).
//
// -tls-cert and -tls-key serve xDS over TLS (the files are read again at
// each new connection, so a renewed certificate needs no restart);
// bootstrap -tls-ca writes the matching bootstrap: "tls" channel
// credentials (gRFC A65) that trust the CAs in that file, a path on the
// client's machine. The certificate must name the host clients dial.
// -tls-client-ca makes the server require client certificates signed by
// those CAs (mTLS); bootstrap -tls-cert and -tls-key name the client's.
//
// The exit status is 0 after SIGINT or SIGTERM, 1 when serving failed, 2 for
// bad usage.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/wayfinder-rpc/wayfinder/registry"
	_ "github.com/wayfinder-rpc/wayfinder/registry/consul" // consul:// URLs
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	_ "github.com/wayfinder-rpc/wayfinder/registry/etcd"       // etcd:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/kubernetes" // kubernetes:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/memory"     // mem:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/multi"      // multi:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/zookeeper"  // zk:// URLs
	"github.com/wayfinder-rpc/wayfinder/xds"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type usageError struct{ error }

// run executes the command and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var err error
	if len(args) > 0 && args[0] == "bootstrap" {
		err = bootstrap(args[1:], stdout)
	} else {
		err = serve(ctx, args, stderr)
	}
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "wayfinder-xds: %v\nrun \"wayfinder-xds -h\" or \"wayfinder-xds bootstrap -h\" for flags\n", usage.error)
		return 2
	default:
		fmt.Fprintf(stderr, "wayfinder-xds: %v\n", err)
		return 1
	}
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	return nil
}

func bootstrap(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("wayfinder-xds bootstrap", flag.ContinueOnError)
	fs.SetOutput(out)
	server := fs.String("server", "127.0.0.1:18000", "host:port of the xDS server")
	node := fs.String("node", "", "the client's node ID (default wayfinder-xds-client)")
	zone := fs.String("zone", "", "the client's zone")
	ca := fs.String("tls-ca", "", "`file`: PEM of the CAs of the server's certificate, on the client's machine; talk TLS (default: plaintext)")
	cert := fs.String("tls-cert", "", "`file`: PEM of the client's own certificate, for a server with -tls-client-ca (with -tls-key)")
	key := fs.String("tls-key", "", "`file`: PEM of the client's private key")
	if err := parse(fs, args); err != nil {
		return err
	}
	b, err := xds.Bootstrap(xds.BootstrapConfig{Server: *server, NodeID: *node, Zone: *zone, CAFile: *ca, CertFile: *cert, KeyFile: *key})
	if err != nil {
		return usageError{err}
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("wayfinder-xds", flag.ContinueOnError)
	fs.SetOutput(stderr)
	regURL := fs.String("registry", "", "the registry's URL, such as consul://127.0.0.1:8500 (required)")
	listen := fs.String("listen", "127.0.0.1:18000", "host:port to serve xDS on")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the registry at start")
	certFile := fs.String("tls-cert", "", "`file`: PEM certificate to serve xDS over TLS with (with -tls-key; default: plaintext)")
	keyFile := fs.String("tls-key", "", "`file`: PEM private key of -tls-cert")
	clientCA := fs.String("tls-client-ca", "", "`file`: PEM of the CAs of the clients' certificates: require one (mTLS; with -tls-cert)")
	debugAddr := fs.String("debug", "", "`host:port` to serve the debug page on, at /debug/wayfinder/xds (default: none)")
	var opts []xds.Option
	fs.Func("canary", "`service=version:percent[,version:percent...]`: send percent of service's calls to its instances of version, such as hello=v2:10,v3:5 (repeatable)", func(v string) error {
		svc, rest, ok := strings.Cut(v, "=")
		if !ok || rest == "" {
			return fmt.Errorf("%q: want service=version:percent,..., such as hello=v2:10,v3:5", v)
		}
		for _, vp := range strings.Split(rest, ",") {
			version, pct, ok := strings.Cut(vp, ":")
			n, err := strconv.Atoi(pct)
			if !ok || err != nil {
				return fmt.Errorf("%q: want service=version:percent,..., such as hello=v2:10,v3:5", v)
			}
			opts = append(opts, xds.WithCanary(svc, version, n))
		}
		return nil
	})
	policies := map[string][]xds.Policy{}
	var order []string // services in the order of their first -policy
	fs.Func("policy", "`service=name[:key=value,...]`: a load-balancing policy of service, such as hello=ring_hash:header=x-user or hello=least_request:choiceCount=3 (repeatable; in order of preference)", func(v string) error {
		svc, p, header, err := parsePolicy(v)
		if err != nil {
			return err
		}
		if _, ok := policies[svc]; !ok {
			order = append(order, svc)
		}
		policies[svc] = append(policies[svc], p)
		if header != "" {
			opts = append(opts, xds.WithHashHeader(svc, header))
		}
		return nil
	})
	fs.Func("outlier", "`service=key=value,...`: outlier detection for service, such as hello=failurePercent=50,interval=5s (repeatable)", func(v string) error {
		svc, od, err := parseOutlier(v)
		if err != nil {
			return err
		}
		opts = append(opts, xds.WithOutlierDetection(svc, od))
		return nil
	})
	fs.Func("route", "`service=key=value,...`: the timeout and retries of service's calls, such as hello=timeout=2s,retryOn=unavailable,retries=2 (repeatable)", func(v string) error {
		svc, r, err := parseRoute(v)
		if err != nil {
			return err
		}
		opts = append(opts, xds.WithRoute(svc, r))
		return nil
	})
	if err := parse(fs, args); err != nil {
		return err
	}
	for _, svc := range order {
		opts = append(opts, xds.WithPolicy(svc, policies[svc]...))
	}
	// Check the options before touching the registry or the network.
	check, err := xds.New(nil, opts...)
	if err != nil {
		return usageError{err}
	}
	check.Close()
	if *regURL == "" {
		return usageError{errors.New("-registry is required")}
	}
	if *timeout <= 0 {
		return usageError{errors.New("-timeout must be positive")}
	}
	if (*certFile == "") != (*keyFile == "") {
		return usageError{errors.New("-tls-cert and -tls-key go together")}
	}
	if *clientCA != "" && *certFile == "" {
		return usageError{errors.New("-tls-client-ca needs -tls-cert and -tls-key")}
	}
	if *certFile != "" {
		creds, err := serverTLS(*certFile, *keyFile, *clientCA)
		if err != nil {
			return err
		}
		opts = append(opts, xds.WithServerCredentials(creds))
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	octx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	reg, err := registry.Open(octx, *regURL)
	if err != nil {
		return err
	}
	defer reg.Close()
	name := "the registry"
	if u, err := url.Parse(*regURL); err == nil {
		name = driver.Redact(u)
	}
	if l, ok := reg.(registry.ServiceLister); ok {
		// Not fatal: the server is stateless, and its watches retry.
		if _, err := l.Services(octx); err != nil {
			logger.Warn("the registry does not answer yet; serving anyway", "registry", name, "err", err)
		}
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv, err := xds.New(reg, append(opts, xds.WithLogger(logger))...)
	if err != nil {
		lis.Close()
		return err
	}
	if *debugAddr != "" {
		dlis, err := net.Listen("tcp", *debugAddr)
		if err != nil {
			lis.Close()
			srv.Close()
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/debug/wayfinder/xds", xds.DebugHandler(srv))
		web := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		webDone := make(chan struct{})
		go func() {
			defer close(webDone)
			_ = web.Serve(dlis) // http.ErrServerClosed after Close
		}()
		defer func() {
			web.Close()
			<-webDone
		}()
		logger.Info("serving the debug page", "url", "http://"+dlis.Addr().String()+"/debug/wayfinder/xds")
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	logger.Info("serving xDS", "listen", lis.Addr().String(), "registry", name)
	select {
	case err = <-served:
		srv.Close()
		return err
	case <-ctx.Done():
	}
	if err := srv.Close(); err != nil {
		return err
	}
	// A signal right after the start may close the server before the
	// goroutine above reaches Serve, which then refuses to start: that is
	// the shutdown asked for, not a failure.
	if err := <-served; err != nil && !errors.Is(err, registry.ErrClosed) {
		return err
	}
	return nil
}

// serverTLS returns TLS credentials that read the certificate and key
// files at each handshake, so that a rotated certificate serves new
// connections without a restart (ADS streams are long-lived: existing
// ones keep theirs). With clientCA, clients must present a certificate
// its CAs signed. It fails if the files do not load now.
func serverTLS(certFile, keyFile, clientCA string) (credentials.TransportCredentials, error) {
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return nil, fmt.Errorf("-tls-cert, -tls-key: %w", err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, err
			}
			return &c, nil
		},
	}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("-tls-client-ca: %w", err)
		}
		cfg.ClientCAs = x509.NewCertPool()
		if !cfg.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-tls-client-ca %s: no PEM certificate", clientCA)
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(cfg), nil
}

// parsePolicy reads a -policy value: service=name[:key=value,...]. A
// ring_hash's header key is returned apart, for xds.WithHashHeader.
func parsePolicy(v string) (service string, p xds.Policy, header string, err error) {
	service, rest, ok := strings.Cut(v, "=")
	name, kvs, _ := strings.Cut(rest, ":")
	if !ok || service == "" || name == "" {
		return "", p, "", fmt.Errorf("%q: want service=name[:key=value,...], such as hello=ring_hash:header=x-user", v)
	}
	p.Name = name
	if kvs == "" {
		return service, p, "", nil
	}
	for _, kv := range strings.Split(kvs, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return "", p, "", fmt.Errorf("%q: config %q: want key=value", v, kv)
		}
		if name == "ring_hash" && k == "header" {
			header = val
			continue
		}
		if p.Config == nil {
			p.Config = map[string]any{}
		}
		if n, err := strconv.Atoi(val); err == nil {
			p.Config[k] = n
		} else if f, err := strconv.ParseFloat(val, 64); err == nil {
			p.Config[k] = f
		} else if b, err := strconv.ParseBool(val); err == nil && (val == "true" || val == "false") {
			p.Config[k] = b
		} else {
			p.Config[k] = val
		}
	}
	return service, p, header, nil
}

// retryCodes are the codes -route's retryOn names, as xDS's retry_on
// does.
var retryCodes = map[string]codes.Code{
	"cancelled":          codes.Canceled,
	"deadline-exceeded":  codes.DeadlineExceeded,
	"internal":           codes.Internal,
	"resource-exhausted": codes.ResourceExhausted,
	"unavailable":        codes.Unavailable,
}

// parseRoute reads a -route value: service=key=value,... with keys
// timeout, retryOn (codes joined by '+'), retries, backoff and
// maxBackoff.
func parseRoute(v string) (string, xds.Route, error) {
	var r xds.Route
	const keys = "keys: timeout, retryOn (cancelled, deadline-exceeded, internal, resource-exhausted, unavailable, joined by +), retries, backoff, maxBackoff"
	service, kvs, ok := strings.Cut(v, "=")
	if !ok || service == "" || kvs == "" {
		return "", r, fmt.Errorf("%q: want service=key=value,..., such as hello=timeout=2s,retryOn=unavailable", v)
	}
	var retry xds.Retry
	retrying := false
	for _, kv := range strings.Split(kvs, ",") {
		k, val, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "timeout":
			r.Timeout, err = time.ParseDuration(val)
		case "retryOn":
			retrying = true
			for _, name := range strings.Split(val, "+") {
				c, ok := retryCodes[name]
				if !ok {
					err = fmt.Errorf("code %q", name)
					break
				}
				retry.On = append(retry.On, c)
			}
		case "retries":
			retrying = true
			retry.NumRetries, err = strconv.Atoi(val)
		case "backoff":
			retrying = true
			retry.BaseBackoff, err = time.ParseDuration(val)
		case "maxBackoff":
			retrying = true
			retry.MaxBackoff, err = time.ParseDuration(val)
		default:
			err = errors.New("unknown key")
		}
		if err != nil {
			return "", r, fmt.Errorf("%q: %q: %v (%s)", v, kv, err, keys)
		}
	}
	if retrying {
		r.Retry = &retry
	}
	return service, r, nil
}

// parseOutlier reads an -outlier value: service=key=value,...
func parseOutlier(v string) (string, xds.OutlierDetection, error) {
	var od xds.OutlierDetection
	service, kvs, ok := strings.Cut(v, "=")
	if !ok || service == "" || kvs == "" {
		return "", od, fmt.Errorf("%q: want service=key=value,..., such as hello=failurePercent=50", v)
	}
	durations := map[string]*time.Duration{
		"interval": &od.Interval, "baseEjectionTime": &od.BaseEjectionTime, "maxEjectionTime": &od.MaxEjectionTime,
	}
	counts := map[string]*int{
		"maxEjectionPercent": &od.MaxEjectionPercent,
		"failurePercent":     &od.FailurePercent, "failureMinimumHosts": &od.FailureMinimumHosts, "failureRequestVolume": &od.FailureRequestVolume,
		"successRateStdevFactor": &od.SuccessRateStdevFactor, "successRateMinimumHosts": &od.SuccessRateMinimumHosts, "successRateRequestVolume": &od.SuccessRateRequestVolume,
	}
	for _, kv := range strings.Split(kvs, ",") {
		k, val, _ := strings.Cut(kv, "=")
		var err error
		if d, ok := durations[k]; ok {
			*d, err = time.ParseDuration(val)
		} else if n, ok := counts[k]; ok {
			*n, err = strconv.Atoi(val)
		} else {
			err = errors.New("unknown key")
		}
		if err != nil {
			return "", od, fmt.Errorf("%q: %q: %v (keys: interval, baseEjectionTime, maxEjectionTime, maxEjectionPercent, failurePercent, failureMinimumHosts, failureRequestVolume, successRateStdevFactor, successRateMinimumHosts, successRateRequestVolume)", v, kv, err)
		}
	}
	return service, od, nil
}
