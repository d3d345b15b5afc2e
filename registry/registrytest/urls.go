package registrytest

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Secret is the password CheckURLSecrets puts in URLs and looks for in
// every error.
const Secret = "s3cr3t-PW"

// secretURLs returns URLs of scheme, with host, that carry Secret where
// a user may put a password or a token: user information (with a user,
// without, with a '/' that url.Parse takes for the end of the host, with
// a bad escape), the opaque form, an unknown parameter, a fragment, and
// each in target form.
func secretURLs(scheme, host string) []string {
	s := Secret
	var out []string
	for _, base := range []string{
		scheme + "://user:" + s + "@" + host,
		scheme + "://" + s + "@" + host,
		scheme + "://user:" + s + "@",
		scheme + "://user:" + s + "@" + host + ":bad",
		scheme + "://user:" + s + "/x@" + host,
		scheme + "://user:" + s + "%zz@" + host,
		scheme + "://user:" + s + "@" + host + "?tls",
		scheme + "://user:" + s + "@[::1",
		scheme + ":user:" + s + "@" + host,
		scheme + "://user:" + s + "@" + host + "#frag",
		scheme + "://" + host + "#" + s,
	} {
		out = append(out, base, base+"/svc")
	}
	for _, q := range []string{"?password=" + s, "?token=" + s + ";x=1", "?x=1&token=" + s, "?x=" + s + "&x=" + s} {
		out = append(out, scheme+"://"+host+q, scheme+"://"+host+"/svc"+q)
	}
	return out
}

// CheckURLSecrets checks that no error about a URL of scheme shows a
// password or token in it: URLs that carry Secret in their user
// information, in an unknown parameter or in a fragment are refused by
// registry.ValidateURL, registry.Open, registry.ParseTarget and
// registry.TargetFromURL, and by each function in also (a backend's own
// Open, resolver.NewClient), with an error that does not contain it. host
// is a host the backend accepts ("" for one that takes none).
func CheckURLSecrets(t *testing.T, scheme, host string, also ...func(rawURL string) error) {
	t.Helper()
	check := func(call, raw string, err error) {
		t.Helper()
		switch {
		case err == nil:
			t.Errorf("%s(%q) = nil error; want the URL refused", call, raw)
		case strings.Contains(err.Error(), "s3cr3t"):
			t.Errorf("%s(%q) = %v; the error shows the secret", call, raw, err)
		}
	}
	for _, raw := range secretURLs(scheme, host) {
		svc := strings.Contains(raw, "/svc")
		if !svc {
			check("registry.ValidateURL", raw, registry.ValidateURL(raw))
			r, err := registry.Open(context.Background(), raw)
			if err == nil {
				r.Close()
			}
			check("registry.Open", raw, err)
			for i, f := range also {
				check("also["+string(rune('0'+i))+"]", raw, f(raw))
			}
			continue
		}
		_, err := registry.ParseTarget(raw)
		if err == nil {
			// A target's query is checked by the backend: the
			// registry part must then be refused by it.
			tg, _ := registry.ParseTarget(raw)
			err = registry.ValidateURL(tg.Registry.String())
		}
		check("registry.ParseTarget", raw, err)
		if u, perr := url.Parse(raw); perr == nil {
			_, err := registry.TargetFromURL(u)
			if err != nil && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("registry.TargetFromURL(%q) = %v; the error shows the secret", raw, err)
			}
		}
		for i, f := range also {
			err := f(raw)
			check("also["+string(rune('0'+i))+"]", raw, err)
		}
	}
}

// CheckURLRules checks that base (a registry URL without a query, such
// as "consul://127.0.0.1:8500") reads its query by the rules every
// backend shares (registry/driver's # URLs): params holds a valid value
// for each parameter the backend accepts, and each opens alone; emptyOK
// names those whose empty value means something. Then, for each, the key
// alone ("?tls"), an empty value (but those of emptyOK), the key twice,
// and ';' between parameters are each an error wrapping
// registry.ErrInvalidURL that names the key (or ';'); so are an unknown
// parameter and a bare "?tls" whether or not the backend knows tls.
func CheckURLRules(t *testing.T, base string, params map[string]string, emptyOK ...string) {
	t.Helper()
	valid := func(raw string) {
		t.Helper()
		if err := registry.ValidateURL(raw); err != nil {
			t.Errorf("ValidateURL(%q) = %v, want nil", raw, err)
			return
		}
		r, err := registry.Open(context.Background(), raw)
		if err != nil {
			t.Errorf("Open(%q) = %v, want nil", raw, err)
			return
		}
		r.Close()
	}
	invalid := func(raw, says string) {
		t.Helper()
		err := registry.ValidateURL(raw)
		if !errors.Is(err, registry.ErrInvalidURL) || !strings.Contains(err.Error(), says) {
			t.Errorf("ValidateURL(%q) = %v; want ErrInvalidURL mentioning %q", raw, err, says)
		}
		r, oerr := registry.Open(context.Background(), raw)
		if oerr == nil {
			r.Close()
		}
		if err != nil && (oerr == nil || oerr.Error() != err.Error()) {
			t.Errorf("Open(%q) = %v; want the error ValidateURL gives, %v", raw, oerr, err)
		}
	}
	invalid(base+"?tls", "tls")
	invalid(base+"?nope=1", `unknown parameter "nope"`)
	invalid(base+"?a=1;b=2", "';'")
	var first string
	for k, v := range params {
		valid(base + "?" + k + "=" + url.QueryEscape(v))
		invalid(base+"?"+k, k+" has no value")
		invalid(base+"?"+k+"&nope=1", "nope")
		if !contains(emptyOK, k) {
			invalid(base+"?"+k+"=", k+" is empty")
		}
		invalid(base+"?"+k+"="+url.QueryEscape(v)+"&"+k+"="+url.QueryEscape(v), k+" given 2 times")
		if first != "" {
			invalid(base+"?"+first+"="+url.QueryEscape(params[first])+";"+k+"="+url.QueryEscape(v), "';'")
		}
		first = k
	}
	for _, k := range emptyOK {
		valid(base + "?" + k + "=")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
