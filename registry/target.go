package registry

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/wayfinder-rpc/wayfinder/registry/internal/urlcheck"
)

// Target is a parsed service target: a registry URL plus a service name,
// such as "consul://127.0.0.1:8500/hello?tag=v2". The service is the
// path; everything else names the registry.
type Target struct {
	Registry *url.URL // scheme://host?query, no path
	Service  string
}

// ParseTarget splits a target URL into its registry URL and service. It
// accepts "mem:///hello" (empty host) as well as "consul://host:8500/hello".
func ParseTarget(raw string) (Target, error) {
	u, err := urlcheck.Parse(raw)
	if err != nil {
		return Target{}, fmt.Errorf("%w: target: %v", ErrInvalidURL, err)
	}
	return TargetFromURL(u)
}

// TargetFromURL is ParseTarget for an already parsed URL, such as the
// one gRPC hands a resolver. It does not modify u. Its errors show the
// target without user information, query or fragment.
func TargetFromURL(u *url.URL) (Target, error) {
	if u.Scheme == "" || u.Opaque != "" {
		return Target{}, fmt.Errorf("%w: target %q: want scheme://[host]/service, such as mem:///hello", ErrInvalidURL, urlcheck.Redact(u))
	}
	path := u.Path
	if u.RawPath != "" {
		return Target{}, fmt.Errorf("%w: target %q: escaped characters in the service name", ErrInvalidURL, urlcheck.Redact(u))
	}
	svc := strings.TrimPrefix(path, "/")
	if svc == "" {
		return Target{}, fmt.Errorf("%w: target %q names no service; want %s://%s/<service>", ErrInvalidURL, urlcheck.Redact(u), u.Scheme, u.Host)
	}
	if err := ValidateService(svc); err != nil {
		return Target{}, fmt.Errorf("%w: target %q: %w", ErrInvalidURL, urlcheck.Redact(u), err)
	}
	reg := *u
	reg.Path, reg.RawPath = "", ""
	if err := checkURL(&reg); err != nil {
		return Target{}, err
	}
	return Target{Registry: &reg, Service: svc}, nil
}

// String returns the target as a URL.
func (t Target) String() string {
	u := *t.Registry
	u.Path = "/" + t.Service
	return u.String()
}
