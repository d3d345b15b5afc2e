package kubernetes

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// urlParams are the query parameters a kubernetes URL accepts, in the
// order errors list them.
var urlParams = []string{"context", "namespace", "port", "timeout", "ttl"}

// parseURL checks a kubernetes registry URL, which has no host, and
// returns the options its parameters set, reading the query by
// registry/driver's rules.
func parseURL(u *url.URL) ([]Option, error) {
	q, err := driver.ReadURL(u, Scheme, urlParams...)
	if err != nil {
		return nil, err
	}
	if u.Host != "" {
		return nil, fmt.Errorf("%w: %s names host %q; the API server comes from the kubeconfig or the in-cluster configuration: want kubernetes:///<service>[.<namespace>]", registry.ErrInvalidURL, driver.Redact(u), u.Host)
	}
	var opts []Option
	if ns := q.String("namespace", "a namespace"); ns != "" {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			q.Fail("namespace", "a namespace name: "+strings.Join(errs, "; "))
		}
		opts = append(opts, WithNamespace(ns))
	}
	if p := q.String("port", "a Service port name or number"); p != "" {
		if err := checkPort(p); err != nil {
			q.Fail("port", "a Service port name or number: "+err.Error())
		}
		opts = append(opts, WithPort(p))
	}
	if c := q.String("context", "a kubeconfig context"); c != "" {
		opts = append(opts, WithContext(c))
	}
	if d := q.Duration("ttl"); d > 0 {
		if d < time.Second {
			q.Fail("ttl", "a duration of at least 1s, such as ttl=30s")
		}
		opts = append(opts, WithTTL(d))
	}
	if d := q.Duration("timeout"); d > 0 {
		opts = append(opts, WithTimeout(d))
	}
	if err := q.Err(); err != nil {
		return nil, err
	}
	return opts, nil
}
