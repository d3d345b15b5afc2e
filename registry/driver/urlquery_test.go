package driver_test

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// TestQuery: the query rules every backend shares, read through one
// reader. Each row reads one URL of scheme "x" with the parameters s
// (string), e (string or empty), b (bool), d (duration), n (int in
// 1..10) and l (list) through the getter of its type, and gets either
// the values or an error that wraps registry.ErrInvalidURL and says
// what is accepted.
func TestQuery(t *testing.T) {
	type got struct {
		S      string
		E      string
		EOK    bool
		B      bool
		D      time.Duration
		N      int
		L      []string
		HasTLS bool
	}
	tests := []struct {
		raw  string
		want got
		err  string // "" for no error; else a part of it
	}{
		{raw: "x://h:1", want: got{}},
		{raw: "x://h:1?", want: got{}},
		{raw: "x://h:1?s=v&b=true&d=1m30s&n=7&l=a,b&e=", want: got{S: "v", B: true, D: 90 * time.Second, N: 7, L: []string{"a", "b"}, EOK: true}},
		{raw: "x://h:1?b=false&s=a%20b%2Cc", want: got{S: "a b,c"}},
		{raw: "x://h:1?s=v&", want: got{S: "v"}},
		{raw: "x://h:1?e=/p", want: got{E: "/p", EOK: true}},

		// ';' is an error, not a silent drop.
		{raw: "x://h:1?s=a;b=true", err: "';' in the query; separate parameters with '&'"},
		{raw: "x://h:1?s=a%3Bb", want: got{S: "a;b"}},
		// Unknown and repeated keys.
		{raw: "x://h:1?token=hunter2", err: `unknown parameter "token"; known parameters: s, e, b, d, n, l, tls`},
		{raw: "x://h:1?S=v", err: `unknown parameter "S"`},
		{raw: "x://h:1?=v", err: `unknown parameter ""`},
		{raw: "x://h:1?s=a&s=b", err: "parameter s given 2 times; give it once"},
		{raw: "x://h:1?l=a&l=b", err: "such as l=a,b"},
		// A key alone, or with an empty value, is an error naming the
		// key and the accepted form, whatever its type.
		{raw: "x://h:1?tls", err: "parameter tls has no value; want tls=true or tls=false"},
		{raw: "x://h:1?b", err: "parameter b has no value; want b=true or b=false"},
		{raw: "x://h:1?b=", err: "parameter b is empty; want b=true or b=false"},
		{raw: "x://h:1?d=", err: "parameter d is empty; want a positive duration, such as d=30s"},
		{raw: "x://h:1?d", err: "parameter d has no value"},
		{raw: "x://h:1?s=", err: "parameter s is empty; want s=<a thing>"},
		{raw: "x://h:1?n=", err: "parameter n is empty; want an integer in 1..10"},
		{raw: "x://h:1?l=", err: "parameter l is empty; want a comma-separated list of items"},
		{raw: "x://h:1?e", err: "parameter e has no value"},
		// Values of each type.
		{raw: "x://h:1?b=1", err: `parameter b="1": want b=true or b=false`},
		{raw: "x://h:1?b=TRUE", err: `parameter b="TRUE": want b=true or b=false`},
		{raw: "x://h:1?d=30", err: `parameter d="30": want a positive duration`},
		{raw: "x://h:1?d=0s", err: `parameter d="0s": want a positive duration`},
		{raw: "x://h:1?d=-1s", err: `parameter d="-1s"`},
		{raw: "x://h:1?n=11", err: `parameter n="11": want an integer in 1..10`},
		{raw: "x://h:1?n=%2B5", err: `parameter n="+5"`},
		{raw: "x://h:1?n=0x5", err: `parameter n="0x5"`},
		{raw: "x://h:1?l=a,,b", err: `parameter l="a,,b": empty element`},
		{raw: "x://h:1?l=a,", err: "empty element"},
		// Escapes.
		{raw: "x://h:1?s=%zz", err: "parameter s: invalid %-escape in its value"},
		{raw: "x://h:1?%zz=1", err: "a parameter's name has an invalid %-escape"},
		// The first error wins.
		{raw: "x://h:1?b=no&d=no", err: `parameter b="no"`},
		// The parts every registry URL shares.
		{raw: "y://h:1", err: `scheme "y", want "x"`},
		{raw: "x://u:pw@h:1", err: `"x://h:1" carries credentials`},
		{raw: "x://h:1/svc", err: `has path "/svc"`},
		{raw: "x://h:1#f", err: "has a fragment"},
	}
	for _, tc := range tests {
		u, err := url.Parse(tc.raw)
		if err != nil {
			t.Fatalf("url.Parse(%q) = %v", tc.raw, err)
		}
		var g got
		q, err := driver.ReadURL(u, "x", "s", "e", "b", "d", "n", "l", "tls")
		if err == nil {
			g.S = q.String("s", "a thing")
			g.E, g.EOK = q.StringOrEmpty("e", "a path")
			g.B = q.Bool("b")
			g.D = q.Duration("d")
			g.N = q.Int("n", 1, 10)
			g.L = q.List("l", "item")
			g.HasTLS = q.Has("tls")
			q.Bool("tls")
			err = q.Err()
		}
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("read %q = %v, want %+v", tc.raw, err, tc.want)
		case tc.err == "" && !reflect.DeepEqual(g, tc.want):
			t.Errorf("read %q = %+v, want %+v", tc.raw, g, tc.want)
		case tc.err != "" && (!errors.Is(err, registry.ErrInvalidURL) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("read %q = %v; want ErrInvalidURL with %q", tc.raw, err, tc.err)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("read %q = %v; the error shows an unknown parameter's value", tc.raw, err)
		}
	}
}

// TestQueryFailAndErrorf: a backend's own checks read as the getters'
// errors do, and a parameter accepted but never read is an error rather
// than a setting silently dropped.
func TestQueryFailAndErrorf(t *testing.T) {
	read := func(raw string, f func(q *driver.Query)) error {
		u, _ := url.Parse(raw)
		q, err := driver.ReadURL(u, "x", "a", "b")
		if err != nil {
			return err
		}
		f(q)
		return q.Err()
	}
	err := read("x://h:1?a=v2", func(q *driver.Query) { q.String("a", "v"); q.Fail("a", "v1 or naming") })
	if want := `registry: invalid URL: x://h:1: parameter a="v2": want v1 or naming`; err == nil || err.Error() != want {
		t.Errorf("Fail = %v, want %s", err, want)
	}
	err = read("x://h:1?a=true&b=true", func(q *driver.Query) {
		q.Bool("a")
		q.Bool("b")
		q.Errorf("a and b exclude each other")
	})
	if want := "registry: invalid URL: x://h:1: a and b exclude each other"; err == nil || err.Error() != want {
		t.Errorf("Errorf = %v, want %s", err, want)
	}
	err = read("x://h:1?a=1&b=1", func(q *driver.Query) { q.String("a", "v") })
	if !errors.Is(err, registry.ErrInvalidURL) || !strings.Contains(err.Error(), "parameter b is accepted but was never read") {
		t.Errorf("a parameter never read = %v; want an error naming it", err)
	}
}

// TestParseURLAndRedact: the one redacting parse and print.
func TestParseURLAndRedact(t *testing.T) {
	for _, raw := range []string{
		"x://user:s3cr3t@h:bad", "x://user:s3cr3t/x@h:1", "x://user:s3cr3t%zz@h", "x://user:s3cr3t@[::1",
	} {
		_, err := driver.ParseURL("x", raw)
		if !errors.Is(err, registry.ErrInvalidURL) || strings.Contains(err.Error(), "s3cr3t") || !strings.HasPrefix(err.Error(), "registry: invalid URL: x: ") {
			t.Errorf("ParseURL(%q) = %v; want ErrInvalidURL naming x, without the password", raw, err)
		}
	}
	if _, err := driver.ParseURL("x", "x://h:bad"); err == nil || !strings.Contains(err.Error(), `":bad"`) {
		t.Errorf(`ParseURL("x://h:bad") = %v; want the bad port quoted (no credentials to hide)`, err)
	}
	for raw, want := range map[string]string{
		"consul://user:pw@127.0.0.1:8500?dc=a&token=t#f": "consul://127.0.0.1:8500",
		"consul://token@127.0.0.1:8500":                  "consul://127.0.0.1:8500",
		"etcd://a:1,b:2?prefix=/p":                       "etcd://a:1,b:2",
		"mem://":                                         "mem://",
		"mem://u:p@":                                     "mem://",
		"mem:///hello?x=1":                               "mem:///hello",
		"kubernetes://?namespace=prod":                   "kubernetes://",
		"consul:user:pw@h":                               "consul:…",
		"consul://user:1234/x@127.0.0.1:8500":            "consul://…",
		"consul://user:1234?x@127.0.0.1:8500":            "consul://…",
		"consul://user:1234#x@127.0.0.1:8500":            "consul://…",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := driver.Redact(u); got != want {
			t.Errorf("Redact(%q) = %q, want %q", raw, got, want)
		}
	}
}

// FuzzReadURL: whatever the URL, reading it never panics, every error
// wraps registry.ErrInvalidURL, a URL with user information is never
// accepted, and its user information never shows in the error.
func FuzzReadURL(f *testing.F) {
	for _, s := range []string{
		"x://h:1?s=v&b=true&d=1m&n=3&l=a,b", "x://h:1?b", "x://h:1?s=a;b=c", "x://u:p4ssw0rd@h:1", "x://h:1?%zz",
		"x://h:1?l=a,,b&l=c", "x:opaque", "x://h:1#f", "x://h:1/p?s=", "x://[::1]:1?e=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := driver.ParseURL("x", raw)
		if err != nil {
			if !errors.Is(err, registry.ErrInvalidURL) {
				t.Fatalf("ParseURL(%q) = %v, want ErrInvalidURL", raw, err)
			}
			return
		}
		q, err := driver.ReadURL(u, "x", "s", "e", "b", "d", "n", "l")
		if err == nil {
			q.String("s", "a thing")
			q.StringOrEmpty("e", "a path")
			q.Bool("b")
			q.Duration("d")
			q.Int("n", 1, 10)
			q.List("l", "item")
			err = q.Err()
		}
		if err == nil {
			if u.User != nil {
				t.Fatalf("ReadURL(%q) accepted user information", raw)
			}
			return
		}
		if !errors.Is(err, registry.ErrInvalidURL) {
			t.Fatalf("ReadURL(%q) = %v, want ErrInvalidURL", raw, err)
		}
		if ui := u.User.String(); ui != "" && strings.Contains(err.Error(), ui+"@") && !strings.Contains(driver.Redact(u), ui+"@") {
			t.Fatalf("ReadURL(%q) = %v: shows the user information", raw, err)
		}
	})
}
