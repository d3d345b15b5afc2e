package driver

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/internal/urlcheck"
)

// ParseURL is url.Parse for a backend's Open(rawURL): its error wraps
// registry.ErrInvalidURL, names scheme, and never quotes the URL, which
// may carry a password (url.Parse's own error quotes all of it).
func ParseURL(scheme, rawURL string) (*url.URL, error) {
	u, err := urlcheck.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", registry.ErrInvalidURL, scheme, err)
	}
	return u, nil
}

// Redact returns u as errors, logs and debug pages may show it: scheme,
// host and path only. User information is dropped entirely (a user name
// too, which url.URL.Redacted keeps), and so are the query, in which an
// unknown parameter may be a secret put there by mistake, and the
// fragment. It is the form of registry.UnavailableError's Registry:
// "consul://127.0.0.1:8500", "etcd://10.0.0.1:2379,10.0.0.2:2379", "mem://".
func Redact(u *url.URL) string { return urlcheck.Redact(u) }

// ReadURL checks a registry URL for a backend and returns a reader of its
// query: the parts every registry URL shares (a scheme, no credentials,
// no path, no fragment), that its scheme is scheme, and the query rules
// of the package documentation (no ';', no unknown or repeated
// parameter, no parameter without a value). known lists the parameters
// the backend accepts, in the order errors list them.
//
// The backend then reads each parameter with a typed getter (String,
// Bool, Duration, Int, List), which records the first error, and ends
// with Err. Every error wraps registry.ErrInvalidURL, shows the URL as
// Redact does, names the parameter and says what is accepted.
func ReadURL(u *url.URL, scheme string, known ...string) (*Query, error) {
	if err := urlcheck.Check(u, registry.ErrInvalidURL); err != nil {
		return nil, err
	}
	if u.Scheme != scheme {
		return nil, fmt.Errorf("%w: %s: scheme %q, want %q", registry.ErrInvalidURL, Redact(u), u.Scheme, scheme)
	}
	q := &Query{scheme: scheme, url: Redact(u), known: known, params: map[string]*param{}}
	if err := q.parse(u.RawQuery); err != nil {
		return nil, err
	}
	return q, nil
}

// Query reads a registry URL's query by the rules every backend shares.
// Its getters return the zero value for an absent parameter, and for a
// malformed one, whose error they record: Err returns the first. A Query
// is not safe for concurrent use.
type Query struct {
	scheme string
	url    string // redacted
	known  []string
	params map[string]*param
	err    error
}

type param struct {
	value string
	bare  bool // "key" alone, without '='
	read  bool
}

func (q *Query) parse(raw string) error {
	if strings.Contains(raw, ";") {
		return q.errorf("';' in the query; separate parameters with '&', as in ?a=1&b=2")
	}
	count := map[string]int{}
	var order []string
	for piece := range strings.SplitSeq(raw, "&") {
		if piece == "" {
			continue // "?a=1&" or "?": nothing there
		}
		rawKey, rawValue, hasValue := strings.Cut(piece, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			return q.errorf("a parameter's name has an invalid %%-escape")
		}
		if !slices.Contains(q.known, key) {
			// Only the name: the value of an unknown parameter may
			// be a secret (?token=...).
			return q.errorf("unknown parameter %q; %s", key, q.knownText())
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return q.errorf("parameter %s: invalid %%-escape in its value", key)
		}
		if count[key] == 0 {
			order = append(order, key)
		}
		count[key]++
		q.params[key] = &param{value: value, bare: !hasValue}
	}
	for _, k := range order {
		if n := count[k]; n > 1 {
			return q.errorf("parameter %s given %d times; give it once (a list is one comma-separated value, such as %s=a,b)", k, n, k)
		}
	}
	return nil
}

func (q *Query) knownText() string {
	if len(q.known) == 0 {
		return q.scheme + " takes no parameters"
	}
	return "known parameters: " + strings.Join(q.known, ", ")
}

// errorf returns an error for the URL: "<ErrInvalidURL>: <url>: <msg>".
func (q *Query) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", registry.ErrInvalidURL, q.url, fmt.Sprintf(format, args...))
}

// Errorf records an error about the query as a whole, such as two
// parameters that exclude each other, unless one is recorded already.
func (q *Query) Errorf(format string, args ...any) {
	if q.err == nil {
		q.err = q.errorf(format, args...)
	}
}

// Fail records that key's value, although well formed, is not accepted:
// want says what is, such as "naming or v1". Backends call it for their
// own checks of a value, so that those errors read as the getters' do.
func (q *Query) Fail(key, want string) {
	p := q.params[key]
	v := ""
	if p != nil {
		v = p.value
	}
	q.Errorf("parameter %s=%q: want %s", key, v, want)
}

// Has reports whether the query has key, with or without a value.
func (q *Query) Has(key string) bool {
	_, ok := q.params[key]
	return ok
}

// value returns key's value and whether it is there and usable. A bare
// key, or an empty value unless emptyOK, records an error that shows the
// accepted form, example.
func (q *Query) value(key, example string, emptyOK bool) (string, bool) {
	p, ok := q.params[key]
	if !ok {
		return "", false
	}
	p.read = true
	switch {
	case p.bare:
		q.Errorf("parameter %s has no value; want %s", key, example)
		return "", false
	case p.value == "" && !emptyOK:
		q.Errorf("parameter %s is empty; want %s", key, example)
		return "", false
	}
	return p.value, true
}

// String returns key's value; want describes the accepted values, such
// as "a node name or _agent". An empty value is an error.
func (q *Query) String(key, want string) string {
	v, _ := q.value(key, fmt.Sprintf("%s=<%s>", key, want), false)
	return v
}

// StringOrEmpty is String for a parameter whose empty value has a
// meaning of its own (etcd's prefix=, the root of relative keys); ok is
// false when key is absent or bare.
func (q *Query) StringOrEmpty(key, want string) (v string, ok bool) {
	return q.value(key, fmt.Sprintf("%s=<%s>", key, want), true)
}

// Bool returns key's value, which must be true or false: no bare key
// ("?tls"), no 1, t or TRUE.
func (q *Query) Bool(key string) bool {
	want := fmt.Sprintf("%s=true or %s=false", key, key)
	v, ok := q.value(key, want, false)
	if !ok {
		return false
	}
	switch v {
	case "true":
		return true
	case "false":
		return false
	}
	q.Errorf("parameter %s=%q: want %s", key, v, want)
	return false
}

// Duration returns key's value, a positive Go duration such as 30s or
// 1m30s.
func (q *Query) Duration(key string) time.Duration {
	want := fmt.Sprintf("a positive duration, such as %s=30s", key)
	v, ok := q.value(key, want, false)
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		q.Errorf("parameter %s=%q: want %s", key, v, want)
		return 0
	}
	return d
}

// Int returns key's value, a decimal integer in lo..hi.
func (q *Query) Int(key string, lo, hi int) int {
	want := fmt.Sprintf("an integer in %d..%d, such as %s=%d", lo, hi, key, hi)
	v, ok := q.value(key, want, false)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi || strings.HasPrefix(v, "+") {
		q.Errorf("parameter %s=%q: want %s", key, v, want)
		return 0
	}
	return n
}

// List returns key's value split at commas; want describes an element,
// such as "datacenter". An empty element ("a,,b", "a,") is an error.
func (q *Query) List(key, want string) []string {
	example := fmt.Sprintf("a comma-separated list of %ss, such as %s=a,b", want, key)
	v, ok := q.value(key, example, false)
	if !ok {
		return nil
	}
	parts := strings.Split(v, ",")
	if slices.Contains(parts, "") {
		q.Errorf("parameter %s=%q: empty element; want %s", key, v, example)
		return nil
	}
	return parts
}

// Err returns the first error a getter, Fail or Errorf recorded. Failing
// that, it reports a parameter the backend accepted but never read, so
// that no setting is ever silently dropped.
func (q *Query) Err() error {
	if q.err != nil {
		return q.err
	}
	for _, k := range q.known {
		if p, ok := q.params[k]; ok && !p.read {
			return q.errorf("parameter %s is accepted but was never read (a bug in the %s backend)", k, q.scheme)
		}
	}
	return nil
}
