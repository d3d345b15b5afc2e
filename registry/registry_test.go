package registry_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	_ "github.com/wayfinder-rpc/wayfinder/registry/memory" // registers mem://
)

func valid() registry.Instance {
	return registry.Instance{ID: "i-1", Service: "hello", Address: "127.0.0.1:8080", Version: "v1", Zone: "z", Weight: 10,
		Tags: []string{"canary"}, Metadata: map[string]string{"owner": "team"}}
}

func TestValidate(t *testing.T) {
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid().Validate() = %v", err)
	}
	tests := []struct {
		field string
		mut   func(*registry.Instance)
	}{
		{"Service", func(i *registry.Instance) { i.Service = "" }},
		{"Service", func(i *registry.Instance) { i.Service = "has space" }},
		{"Service", func(i *registry.Instance) { i.Service = "-leading" }},
		{"Service", func(i *registry.Instance) { i.Service = "a/b" }},
		{"Service", func(i *registry.Instance) { i.Service = strings.Repeat("s", registry.MaxNameLen+1) }},
		{"ID", func(i *registry.Instance) { i.ID = "" }},
		{"ID", func(i *registry.Instance) { i.ID = "a/b" }},
		{"ID", func(i *registry.Instance) { i.ID = "a\x00b" }},
		{"Address", func(i *registry.Instance) { i.Address = "" }},
		{"Address", func(i *registry.Instance) { i.Address = "127.0.0.1" }},
		{"Address", func(i *registry.Instance) { i.Address = "127.0.0.1:0" }},
		{"Address", func(i *registry.Instance) { i.Address = "127.0.0.1:65536" }},
		{"Address", func(i *registry.Instance) { i.Address = "127.0.0.1:http" }},
		{"Address", func(i *registry.Instance) { i.Address = ":8080" }},
		{"Address", func(i *registry.Instance) { i.Address = "0.0.0.0:8080" }},
		{"Address", func(i *registry.Instance) { i.Address = "[::]:8080" }},
		{"Address", func(i *registry.Instance) { i.Address = "[fe80::1%eth0]:8080" }},
		{"Address", func(i *registry.Instance) { i.Address = "bad host:8080" }},
		{"Version", func(i *registry.Instance) { i.Version = "v\n1" }},
		{"Zone", func(i *registry.Instance) { i.Zone = strings.Repeat("z", registry.MaxNameLen+1) }},
		{"Weight", func(i *registry.Instance) { i.Weight = -1 }},
		{"Weight", func(i *registry.Instance) { i.Weight = registry.MaxWeight + 1 }},
		{"Tags[0]", func(i *registry.Instance) { i.Tags = []string{""} }},
		{"Tags[1]", func(i *registry.Instance) { i.Tags = []string{"ok", "\xff"} }},
		{"Tags", func(i *registry.Instance) { i.Tags = make([]string, registry.MaxTags+1) }},
		{"Metadata", func(i *registry.Instance) { i.Metadata = map[string]string{"": "x"} }},
		{`Metadata["a.b"]`, func(i *registry.Instance) { i.Metadata = map[string]string{"a.b": "x"} }},
		{`Metadata["wayfinder_weight"]`, func(i *registry.Instance) { i.Metadata = map[string]string{"wayfinder_weight": "x"} }},
		{`Metadata["consul-x"]`, func(i *registry.Instance) { i.Metadata = map[string]string{"consul-x": "x"} }},
		{`Metadata["k"]`, func(i *registry.Instance) { i.Metadata = map[string]string{"k": "\xff\xfe"} }},
		{`Metadata["k"]`, func(i *registry.Instance) {
			i.Metadata = map[string]string{"k": strings.Repeat("v", registry.MaxMetaValueLen+1)}
		}},
		{"Metadata", func(i *registry.Instance) {
			i.Metadata = map[string]string{}
			for n := range registry.MaxMetadataPairs + 1 {
				i.Metadata[strings.Repeat("k", n+1)] = "v"
			}
		}},
	}
	for _, tc := range tests {
		inst := valid().Clone()
		tc.mut(&inst)
		err := inst.Validate()
		var ie *registry.InvalidError
		if !errors.As(err, &ie) || !errors.Is(err, registry.ErrInvalidInstance) {
			t.Errorf("Validate(%+v) = %v, want an *InvalidError wrapping ErrInvalidInstance", inst, err)
			continue
		}
		if ie.Field != tc.field {
			t.Errorf("Validate(%+v) names field %q, want %q (%v)", inst, ie.Field, tc.field, err)
		}
	}
	for _, addr := range []string{"[::1]:1", "localhost:65535", "svc.ns.svc.cluster.local:443", "10.0.0.1:8080"} {
		inst := valid()
		inst.Address = addr
		if err := inst.Validate(); err != nil {
			t.Errorf("Validate(address %q) = %v, want nil", addr, err)
		}
	}
}

func TestEffectiveWeight(t *testing.T) {
	if w := (registry.Instance{}).EffectiveWeight(); w != registry.DefaultWeight {
		t.Errorf("EffectiveWeight() of weight 0 = %d, want %d", w, registry.DefaultWeight)
	}
	if w := (registry.Instance{Weight: 5}).EffectiveWeight(); w != 5 {
		t.Errorf("EffectiveWeight() = %d, want 5", w)
	}
}

func TestEqualTreatsNilAndEmptyAlike(t *testing.T) {
	a, b := valid(), valid()
	a.Tags, b.Tags = nil, []string{}
	a.Metadata, b.Metadata = nil, map[string]string{}
	if !a.Equal(b) {
		t.Errorf("Equal with nil vs empty Tags/Metadata = false, want true")
	}
	b.Metadata["k"] = "v"
	if a.Equal(b) {
		t.Errorf("Equal with different Metadata = true, want false")
	}
}

// TestRegisteredIsNotCompared: the stamp describes the registration, not
// the instance, so it never makes two instances differ, and any stamp
// validates.
func TestRegisteredIsNotCompared(t *testing.T) {
	a, b := valid(), valid()
	a.Registered = time.Now()
	if !a.Equal(b) || !driver.EqualSets([]registry.Instance{a}, []registry.Instance{b}) {
		t.Errorf("instances differing only in Registered are not Equal")
	}
	if err := a.Validate(); err != nil {
		t.Errorf("Validate() with a stamp = %v", err)
	}
	if c := a.Clone(); !c.Registered.Equal(a.Registered) {
		t.Errorf("Clone() dropped Registered")
	}
	for _, k := range []string{"wayfinder_registered", "Wayfinder_Registered"} {
		b.Metadata = map[string]string{k: "2026-01-02T03:04:05Z"}
		if err := b.Validate(); !errors.Is(err, registry.ErrInvalidInstance) {
			t.Errorf("Validate() with the reserved Metadata key %q = %v, want ErrInvalidInstance", k, err)
		}
	}
}

func TestNewIDIsUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := registry.NewID()
		if seen[id] || len(id) != 32 {
			t.Fatalf("NewID() = %q (len %d, seen %v), want 32 unique hex digits", id, len(id), seen[id])
		}
		seen[id] = true
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		url  string
		want error
		says string
	}{
		{"nosuch://x", registry.ErrUnknownScheme, "mem"},
		{"", registry.ErrInvalidURL, "no scheme"},
		{"127.0.0.1:8500", registry.ErrInvalidURL, ""},
		{"mem://?bogus=1", registry.ErrInvalidURL, "bogus"},
		{"mem:///hello", registry.ErrInvalidURL, "names no service"},
		{"mem://u:pw@x", registry.ErrInvalidURL, "credentials"},
		{"mem://x#frag", registry.ErrInvalidURL, "fragment"},
		{"mem://%zz", registry.ErrInvalidURL, ""},
	}
	for _, tc := range tests {
		r, err := registry.Open(ctx, tc.url)
		if err == nil {
			r.Close()
		}
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Open(%q) = %v, want %v mentioning %q", tc.url, err, tc.want, tc.says)
		}
		if err != nil && strings.Contains(err.Error(), "pw@") {
			t.Errorf("Open(%q) error leaks credentials: %v", tc.url, err)
		}
		if vErr := registry.ValidateURL(tc.url); vErr == nil {
			t.Errorf("ValidateURL(%q) = nil, want an error", tc.url)
		}
	}
	r, err := registry.Open(ctx, "mem://")
	if err != nil {
		t.Fatalf(`Open("mem://") = %v`, err)
	}
	r.Close()
}

func TestParseTarget(t *testing.T) {
	good := map[string][2]string{
		"mem:///hello":                             {"mem:", "hello"},
		"mem://ns/hello":                           {"mem://ns", "hello"},
		"consul://127.0.0.1:8500/orders?tag=v2":    {"consul://127.0.0.1:8500?tag=v2", "orders"},
		"etcd://10.0.0.1:2379,10.0.0.2:2379/a.b-c": {"etcd://10.0.0.1:2379,10.0.0.2:2379", "a.b-c"},
	}
	for in, want := range good {
		got, err := registry.ParseTarget(in)
		if err != nil || got.Registry.String() != want[0] || got.Service != want[1] {
			t.Errorf("ParseTarget(%q) = %v %q, %v; want %q %q", in, got.Registry, got.Service, err, want[0], want[1])
			continue
		}
		if rt := got.String(); rt != in {
			t.Errorf("ParseTarget(%q).String() = %q, want the input", in, rt)
		}
	}
	for _, in := range []string{"", "hello", "mem:", "mem://", "mem:///", "mem:///a/b", "mem:///a%2Fb", "mem:///bad name", "mem://u:p@h/s", "mem:///s#f", "mem:hello"} {
		if got, err := registry.ParseTarget(in); !errors.Is(err, registry.ErrInvalidURL) {
			t.Errorf("ParseTarget(%q) = %+v, %v; want ErrInvalidURL", in, got, err)
		}
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"mem:///hello", "consul://127.0.0.1:8500/orders?tag=v2", "etcd://a:1,b:2/x", "mem://u:p@h/s", "%", "a:b", ":///"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := registry.ParseTarget(s)
		if err != nil {
			if !errors.Is(err, registry.ErrInvalidURL) {
				t.Fatalf("ParseTarget(%q) error %v does not wrap ErrInvalidURL", s, err)
			}
			return
		}
		if registry.ValidateService(tg.Service) != nil || tg.Registry.User != nil || tg.Registry.Path != "" {
			t.Fatalf("ParseTarget(%q) = %+v accepted something invalid", s, tg)
		}
		// Round trip: the printed target parses to the same thing.
		again, err := registry.ParseTarget(tg.String())
		if err != nil || again.Service != tg.Service || again.Registry.String() != tg.Registry.String() {
			t.Fatalf("ParseTarget(%q).String() = %q does not round-trip: %+v, %v", s, tg.String(), again, err)
		}
	})
}

// FuzzOpen checks Open's contract on any input (registry/doc.go, "URLs"
// and "Errors"; registry/driver/doc.go, "URLs"): an error wraps
// ErrInvalidURL or ErrUnknownScheme and comes with a nil Registry; no
// error comes with a Registry that closes; ValidateURL agrees with Open;
// and user information given in the URL, a user name or a password,
// never shows in the error. Valid URLs of network backends are only
// validated, not opened, so that nothing dials the fuzzer's hosts.
func FuzzOpen(f *testing.F) {
	for _, s := range []string{"mem://", "mem://x?y=1", "nosuch://", "mem://u@h", "\x00",
		"mem://alice:s3cret@h", "mem://alice:s3cret@/", "mem://:p%40ss@h?x=1", "nosuch://bob:hunter2@h:1/p#f",
		"mem://name?timeout=1s", "mem://a@b@c/", "mem:///svc", "MEM://h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := openAndClose(t, s)
		start, end, ok := userInfo(s)
		if !ok {
			return
		}
		// The same URL with user information of ours: neither part shows.
		const user, password = "wfuser", "wfpassword"
		planted := s[:start] + user + ":" + password + s[end:]
		perr := openAndClose(t, planted)
		if perr == nil {
			t.Fatalf("Open(%q) = nil error, want user information rejected", planted)
		}
		if strings.Contains(perr.Error(), user) || strings.Contains(perr.Error(), password) {
			t.Fatalf("Open(%q) error %q shows the user information", planted, perr)
		}
		if err == nil {
			t.Fatalf("Open(%q) = nil error, want user information rejected", s)
		}
		// The input's own user information shows only where it shows
		// anyway, in the rest of the URL or the error's own words.
		for _, secret := range secrets(s[start:end]) {
			if len(secret) >= 3 && strings.Contains(err.Error(), secret) && !strings.Contains(perr.Error(), secret) {
				t.Fatalf("Open(%q) error %q shows %q from the user information", s, err, secret)
			}
		}
	})
}

// openAndClose opens s, checks Open's result against its contract, and
// closes what it opened.
func openAndClose(t *testing.T, s string) error {
	t.Helper()
	verr := registry.ValidateURL(s)
	if u, _ := url.Parse(s); verr == nil && u.Scheme != "mem" {
		// A valid consul:// or etcd:// URL: Open would start a client of
		// whatever host the fuzzer wrote, and tests reach only loopback.
		return nil
	}
	r, err := registry.Open(context.Background(), s)
	if (err == nil) != (verr == nil) {
		t.Fatalf("Open(%q) = %v but ValidateURL = %v; want both nil or both errors", s, err, verr)
	}
	if err != nil {
		if r != nil {
			t.Fatalf("Open(%q) = %v, %v; want a nil Registry with the error", s, r, err)
		}
		if !errors.Is(err, registry.ErrInvalidURL) && !errors.Is(err, registry.ErrUnknownScheme) {
			t.Fatalf("Open(%q) error %v wraps neither ErrInvalidURL nor ErrUnknownScheme", s, err)
		}
		return err
	}
	if r == nil {
		t.Fatalf("Open(%q) = nil, nil; want a Registry", s)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Open(%q).Close() = %v, want nil", s, err)
	}
	return nil
}

// userInfo finds the user information in a URL with an authority:
// s[start:end] is what lies between "://" and the last '@' before the
// path, query or fragment.
func userInfo(s string) (start, end int, ok bool) {
	i := strings.Index(s, "://")
	if i < 0 || strings.ContainsAny(s[:i], "/?#") {
		return 0, 0, false
	}
	start = i + len("://")
	auth := s[start:]
	if j := strings.IndexAny(auth, "/?#"); j >= 0 {
		auth = auth[:j]
	}
	at := strings.LastIndex(auth, "@")
	if at < 0 {
		return 0, 0, false
	}
	return start, start + at, true
}

// secrets returns the user name and password of user information, as
// written and %-decoded.
func secrets(userinfo string) []string {
	user, password, _ := strings.Cut(userinfo, ":")
	out := []string{user, password}
	for _, s := range []string{user, password} {
		if d, err := url.PathUnescape(s); err == nil {
			out = append(out, d)
		}
	}
	return out
}

func FuzzValidate(f *testing.F) {
	f.Add("i-1", "hello", "127.0.0.1:80", "v1", "z", 1, "tag", "key", "value")
	f.Add("", "", "", "", "", -1, "", "", "")
	f.Add("a/b", "s", "[::]:1", "\xff", "z", 2_000_000, "\x00", "a.b", "\xfe")
	f.Fuzz(func(t *testing.T, id, svc, addr, ver, zone string, weight int, tag, k, v string) {
		inst := registry.Instance{ID: id, Service: svc, Address: addr, Version: ver, Zone: zone, Weight: weight,
			Tags: []string{tag}, Metadata: map[string]string{k: v}}
		err := inst.Validate()
		if err == nil {
			// Whatever validates is safe for every backend.
			if !utf8.ValidString(v) || !utf8.ValidString(tag) || weight < 0 || strings.Contains(id, "/") {
				t.Fatalf("Validate(%+v) = nil for invalid input", inst)
			}
			return
		}
		if !errors.Is(err, registry.ErrInvalidInstance) {
			t.Fatalf("Validate(%+v) = %v, not wrapping ErrInvalidInstance", inst, err)
		}
	})
}
