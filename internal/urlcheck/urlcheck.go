// Package urlcheck holds the check of the parts every registry URL
// shares, for package registry's URLMux and for the driver package's
// ValidateURL, which backends call from their own OpenURL.
package urlcheck

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Check returns an error wrapping invalid (registry.ErrInvalidURL)
// unless u has a scheme, no user information, no path and no fragment.
func Check(u *url.URL, invalid error) error {
	switch {
	case u.Scheme == "":
		return fmt.Errorf("%w: %q has no scheme; want scheme://host, such as mem:// or consul://127.0.0.1:8500", invalid, u.Redacted())
	case u.Opaque != "":
		return fmt.Errorf("%w: %q: want scheme://host, with two slashes", invalid, u.Redacted())
	case u.User != nil:
		return fmt.Errorf("%w: %q carries credentials; pass secrets through options or environment variables, never in a URL that may be logged", invalid, u.Redacted())
	case u.Path != "" && u.Path != "/":
		return fmt.Errorf("%w: %q has path %q; a registry URL names no service (targets do: scheme://host/service)", invalid, u.Redacted(), u.Path)
	case u.Fragment != "":
		return fmt.Errorf("%w: %q has a fragment", invalid, u.Redacted())
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
