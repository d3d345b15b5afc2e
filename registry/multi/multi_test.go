package multi_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/leak"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/wait"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/registry/multi"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

func TestMain(m *testing.M) { leak.VerifyTestMain(m, func() { resolver.DefaultCache().Close() }) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// two returns a multi Registry reading and writing two private memory
// registries, "old" listed first, and the member clients.
func two(t *testing.T, opts ...multi.Option) (*multi.Registry, *memory.Registry, *memory.Registry) {
	t.Helper()
	old, nw := memory.New(), memory.New()
	r, err := multi.New(
		[]multi.Member{{Name: "mem://old", Registry: old}, {Name: "mem://new", Registry: nw}},
		[]multi.Member{{Name: "mem://old", Registry: old}, {Name: "mem://new", Registry: nw}}, opts...)
	if err != nil {
		t.Fatalf("multi.New = %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r, old, nw
}

var refused = syscall.ECONNREFUSED

// TestUnionFirstListedWins: the union holds every member's instances once;
// where two disagree about an ID, the first read member's wins.
func TestUnionFirstListedWins(t *testing.T) {
	r, old, nw := two(t)
	svc := "hello"
	a, b, c := registrytest.MakeInstance(svc, 1), registrytest.MakeInstance(svc, 2), registrytest.MakeInstance(svc, 3)
	bNew := b.Clone()
	bNew.Address, bNew.Version = "127.0.0.9:9", "v2"
	ctx := ctxT(t)
	for _, step := range []struct {
		reg  registry.Registrar
		inst registry.Instance
	}{{old, a}, {old, b}, {nw, bNew}, {nw, c}} {
		if err := step.reg.Register(ctx, step.inst); err != nil {
			t.Fatalf("Register(%v) = %v", step.inst, err)
		}
	}
	got, err := r.Lookup(ctx, svc)
	if err != nil || !registrytest.SameIDs(got, a, b, c) {
		t.Fatalf("Lookup(%q) = %v, %v; want [a b c]", svc, registrytest.IDs(got), err)
	}
	if got[1].Version != "v1" {
		t.Errorf("Lookup(%q)[b] = %+v; want old's (listed first), version v1", svc, got[1])
	}
	w, err := r.Watch(ctx, svc)
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	defer w.Close()
	got, err = w.Next(ctx)
	if err != nil || !registrytest.SameIDs(got, a, b, c) || got[1].Version != "v1" {
		t.Fatalf("Next() = %+v, %v; want [a b c] with old's b", got, err)
	}
	// old withdraws b: new's b shows.
	if err := old.Deregister(ctx, b); err != nil {
		t.Fatal(err)
	}
	got, err = w.Next(ctx)
	if err != nil || !registrytest.SameIDs(got, a, b, c) || got[1].Version != "v2" {
		t.Fatalf("Next() after old deregistered b = %+v, %v; want [a b c] with new's b", got, err)
	}
}

// TestMemberOutageKeepsItsInstances: an outage of one read member is the
// watch's error, its instances stay, and the other member's changes are
// passed on, each followed by the outage's error again; Lookup fails.
func TestMemberOutageKeepsItsInstances(t *testing.T) {
	r, old, nw := two(t)
	svc := "hello"
	a, b, c := registrytest.MakeInstance(svc, 1), registrytest.MakeInstance(svc, 2), registrytest.MakeInstance(svc, 3)
	ctx := ctxT(t)
	if err := old.Register(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := nw.Register(ctx, b); err != nil {
		t.Fatal(err)
	}
	w, err := r.Watch(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got, err := w.Next(ctx); err != nil || !registrytest.SameIDs(got, a, b) {
		t.Fatalf("Next() = %v, %v; want [a b]", registrytest.IDs(got), err)
	}
	old.SetOutage(refused)
	got, err := w.Next(ctx)
	var ue *registry.UnavailableError
	if got != nil || !errors.As(err, &ue) || ue.Registry != memory.PrivateName {
		t.Fatalf("Next() in old's outage = %v, %v; want nil and old's *registry.UnavailableError", registrytest.IDs(got), err)
	}
	if got, err := r.Lookup(ctx, svc); got != nil || !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Lookup() in old's outage = %v, %v; want nil, ErrUnavailable", registrytest.IDs(got), err)
	}
	if err := nw.Register(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err = w.Next(ctx)
	if err != nil || !registrytest.SameIDs(got, a, b, c) {
		t.Fatalf("Next() after new added c in old's outage = %v, %v; want [a b c] (old's a kept)", registrytest.IDs(got), err)
	}
	if got, err := w.Next(ctx); got != nil || !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Next() after that = %v, %v; want old's outage again", registrytest.IDs(got), err)
	}
	old.SetOutage(nil)
	if got, err := w.Next(ctx); err != nil || !registrytest.SameIDs(got, a, b, c) {
		t.Fatalf("Next() after old's outage = %v, %v; want [a b c]", registrytest.IDs(got), err)
	}
}

// TestFirstSetWaitsForEveryMember: a member in an outage from the start
// makes the first Next an error, never the other member's set alone.
func TestFirstSetWaitsForEveryMember(t *testing.T) {
	r, old, nw := two(t)
	svc := "hello"
	a, b := registrytest.MakeInstance(svc, 1), registrytest.MakeInstance(svc, 2)
	ctx := ctxT(t)
	if err := old.Register(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := nw.Register(ctx, b); err != nil {
		t.Fatal(err)
	}
	old.SetOutage(refused)
	w, err := r.Watch(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got, err := w.Next(ctx); got != nil || !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("first Next() with old down = %v, %v; want old's error, not new's set alone", registrytest.IDs(got), err)
	}
	old.SetOutage(nil)
	if got, err := w.Next(ctx); err != nil || !registrytest.SameIDs(got, a, b) {
		t.Fatalf("Next() once old answers = %v, %v; want [a b]", registrytest.IDs(got), err)
	}
}

// TestWriteRetriedInBackground: Register writes to the member that
// answers at once, fails naming the one that does not, and retries it in
// the background until it holds the instance; Status says so meanwhile.
func TestWriteRetriedInBackground(t *testing.T) {
	r, old, nw := two(t, multi.WithRetry(10*time.Millisecond, 50*time.Millisecond, time.Second))
	svc := "hello"
	a := registrytest.MakeInstance(svc, 1)
	ctx := ctxT(t)
	old.SetOutage(refused)
	err := r.Register(ctx, a)
	var ue *registry.UnavailableError
	if !errors.As(err, &ue) || ue.Cause != registry.CauseRefused {
		t.Fatalf("Register with old down = %v; want old's refusal", err)
	}
	if got, err := nw.Lookup(ctx, svc); err != nil || !registrytest.SameIDs(got, a) {
		t.Fatalf("new.Lookup = %v, %v; want [a]: a down member holds up no other", registrytest.IDs(got), err)
	}
	st := r.Status(a)
	if st.State != registry.StateRetrying || st.Err == nil {
		t.Fatalf("Status(a) with old down = %+v; want retrying with old's error", st)
	}
	ms := r.MemberStatus(a)
	if len(ms) != 2 || ms[0].Registry != "mem://old" || ms[0].State != registry.StateRetrying || ms[1].State != registry.StateRegistered {
		t.Fatalf("MemberStatus(a) = %+v; want old retrying, new registered", ms)
	}
	old.SetOutage(nil)
	if !wait.Until(10*time.Second, func() bool { return r.Status(a).State == registry.StateRegistered }) {
		t.Fatalf("Status(a) after old came back = %+v; want registered", r.Status(a))
	}
	if got, err := old.Lookup(ctx, svc); err != nil || !registrytest.SameIDs(got, a) {
		t.Fatalf("old.Lookup = %v, %v; want [a], written by the retrier", registrytest.IDs(got), err)
	}

	// A Deregister during an outage cancels nothing it should not: the
	// withdrawal is retried too, and a is gone from both.
	old.SetOutage(refused)
	if err := r.Deregister(ctx, a); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Deregister with old down = %v; want old's error", err)
	}
	if st := r.Status(a); st.State != registry.StateUnknown {
		t.Errorf("Status(a) after Deregister = %+v; want unknown", st)
	}
	old.SetOutage(nil)
	if !wait.Until(10*time.Second, func() bool { got, err := old.Lookup(ctx, svc); return err == nil && len(got) == 0 }) {
		t.Fatalf("old still holds a after the retried Deregister")
	}
}

// TestReadOnly: without a write member, writes fail with ErrReadOnly.
func TestReadOnly(t *testing.T) {
	r, err := multi.New([]multi.Member{{Name: "mem://", Registry: memory.New()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a := registrytest.MakeInstance("hello", 1)
	if err := r.Register(t.Context(), a); !errors.Is(err, multi.ErrReadOnly) {
		t.Errorf("Register on a read-only multi = %v; want ErrReadOnly", err)
	}
	if err := r.Deregister(t.Context(), a); !errors.Is(err, multi.ErrReadOnly) {
		t.Errorf("Deregister on a read-only multi = %v; want ErrReadOnly", err)
	}
	if _, err := multi.New(nil, []multi.Member{{Name: "mem://", Registry: memory.New()}}); err == nil {
		t.Errorf("multi.New without a read member = nil error")
	}
}

// TestURLs: the URL form, its errors, and what they never show.
func TestURLs(t *testing.T) {
	good := []string{
		"multi://?read=mem://",
		"multi://?read=mem://a,mem://b&write=mem://b",
		"multi://?read=mem://a&write=mem://a,mem://b",
		"multi://?read=" + escape("mem://a") + "&write=mem://b",
		"multi://?write=mem://b&read=mem://a",
	}
	for _, raw := range good {
		if err := registry.ValidateURL(raw); err != nil {
			t.Errorf("ValidateURL(%q) = %v, want nil", raw, err)
		}
	}
	registrytest.CheckOpen(t, good, nil)
	bad := map[string]string{
		"multi://":                                "no read member",
		"multi://?write=mem://a":                  "no read member",
		"multi://host?read=mem://":                "no host",
		"multi://?read=mem://&read=mem://b":       "read given 2 times",
		"multi://?read=mem://;write=mem://":       "';'",
		"multi://?read=mem://&nope=1":             `unknown parameter "nope"`,
		"multi://?read":                           "read has no value",
		"multi://?read=":                          "read is empty",
		"multi://?read=multi://?read=mem://":      "cannot be a member",
		"multi://?read=nope://x":                  "unknown scheme",
		"multi://?read=mem://a,,mem://b":          "",
		"multi://?read=mem://a,mem://a":           "lists mem://a twice",
		"multi://?read=mem://?x=1&y=2":            `parameter "y" is not multi's`,
		"multi://?read=mem://a?ttl=1s&write=m://": "",
	}
	for raw, says := range bad {
		err := registry.ValidateURL(raw)
		if !errors.Is(err, registry.ErrInvalidURL) && !errors.Is(err, registry.ErrUnknownScheme) || !strings.Contains(err.Error(), says) {
			t.Errorf("ValidateURL(%q) = %v; want ErrInvalidURL mentioning %q", raw, err, says)
		}
	}
	registrytest.CheckOpen(t, nil, keys(bad))
	// A member's secrets never show, whatever the member's fault.
	registrytest.CheckURLSecrets(t, "multi", "")
	registrytest.CheckURLSecrets(t, "mem", "x",
		func(raw string) error { return registry.ValidateURL("multi://?read=" + raw) },
		func(raw string) error { return registry.ValidateURL("multi://?read=mem://&write=" + escape(raw)) },
		func(raw string) error {
			r, err := registry.Open(t.Context(), "multi://?read="+escape(raw))
			if err == nil {
				r.Close()
			}
			return err
		})
}

func escape(s string) string { return url.QueryEscape(s) }

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
