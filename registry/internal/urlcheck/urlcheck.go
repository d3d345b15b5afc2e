// Package urlcheck holds the checks of the parts every registry URL
// shares and the one redacting parse and print of a URL, for package
// registry's URLMux and targets and for the driver package, which
// backends call from their own Open and OpenURL.
package urlcheck

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Parse is url.Parse whose error never quotes the URL, which may carry a
// password. url.Parse's own error quotes the whole URL; Parse keeps only
// what went wrong, and when the URL has an '@' (user information, or a
// password with a '/' that made url.Parse read part of it as a port) it
// drops the quoted fragment too.
func Parse(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err == nil {
		return u, nil
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if strings.Contains(raw, "@") {
		return nil, fmt.Errorf("%s; a registry URL carries no user information", unquote(err.Error()))
	}
	return nil, err
}

// unquote replaces each double-quoted part of msg with "…".
func unquote(msg string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(msg, '"')
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		b.WriteString(msg[:i])
		q, err := strconv.QuotedPrefix(msg[i:])
		if err != nil {
			b.WriteString(`"…"`)
			return b.String()
		}
		b.WriteString(`"…"`)
		msg = msg[i+len(q):]
	}
}

// Redact returns u as errors, logs and debug pages may show it: scheme,
// host and path, with no user information at all (not even a user name,
// which url.URL.Redacted keeps, and which some put a token in), no query
// (an unknown parameter may be a secret put there by mistake) and no
// fragment. An opaque URL ("consul:user:pw@h") shows only its scheme, and
// so does one with an '@' after its host: a password with a '/', '?' or
// '#' ("user:1234/x@h") ends the host early, and its start reads as a
// port.
func Redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	if u.Opaque != "" {
		return u.Scheme + ":…"
	}
	if misplacedAt(u) {
		return u.Scheme + "://…"
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	s := r.String()
	if u.Host == "" && u.Scheme != "" && !strings.HasPrefix(s, u.Scheme+"://") {
		s = u.Scheme + "://" + strings.TrimPrefix(s, u.Scheme+":")
	}
	return s
}

// misplacedAt reports an '@' after the host, where no registry URL or
// target has one.
func misplacedAt(u *url.URL) bool {
	return strings.Contains(u.Path, "@") || strings.Contains(u.RawQuery, "@") || strings.Contains(u.Fragment, "@")
}

// Check returns an error wrapping invalid (registry.ErrInvalidURL)
// unless u has a scheme, no user information, no path and no fragment.
// It shows u as Redact does.
func Check(u *url.URL, invalid error) error {
	switch {
	case u.Scheme == "":
		return fmt.Errorf("%w: %q has no scheme; want scheme://host, such as mem:// or consul://127.0.0.1:8500", invalid, Redact(u))
	case u.Opaque != "":
		return fmt.Errorf("%w: %q: want scheme://host, with two slashes", invalid, Redact(u))
	case u.User != nil || strings.Contains(u.Path, "@") || strings.Contains(u.Fragment, "@"):
		return fmt.Errorf("%w: %q carries credentials; pass secrets through options or environment variables, never in a URL that may be logged", invalid, Redact(u))
	case u.Path != "" && u.Path != "/":
		return fmt.Errorf("%w: %q has path %q; a registry URL names no service (targets do: scheme://host/service)", invalid, Redact(&url.URL{Scheme: u.Scheme, Host: u.Host}), u.Path)
	case u.Fragment != "" || u.RawFragment != "":
		return fmt.Errorf("%w: %q has a fragment", invalid, Redact(u))
	}
	return nil
}

// HostPort returns an error unless hp is host:port with a non-empty host
// and a port in 1..65535: the form of a URL's host (or each of its
// comma-separated hosts) when it names servers to dial.
func HostPort(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("empty host")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || strings.HasPrefix(port, "+") {
		return fmt.Errorf("port %q is not in 1..65535", port)
	}
	return nil
}
