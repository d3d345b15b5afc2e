package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
	"github.com/wayfinder-rpc/wayfinder/registry/registrytest"
)

// registryCommands are the commands that talk to a registry, with their
// arguments for the registry at url (service "hello").
func registryCommands(url string) map[string][]string {
	return map[string][]string{
		"services":   {"services", url},
		"instances":  {"instances", url + "/hello"},
		"watch":      {"watch", url + "/hello"},
		"register":   {"register", "-once", "-addr", "127.0.0.1:7009", "-id", "t", url + "/hello"},
		"deregister": {"deregister", "-id", "t", url + "/hello"},
		"call":       {"call", url + "/hello", "SayHello"},
	}
}

// register adds up to 2 s to -timeout to withdraw what a failed
// registration may have left (docs/cli.md says so).
const slack = 5 * time.Second

// runBounded runs args with -timeout d and fails the test unless it
// exits 1 within d+slack with want on standard error.
func runBounded(t *testing.T, d time.Duration, args []string, want ...string) {
	t.Helper()
	args = append([]string{args[0], "-timeout", d.String()}, args[1:]...)
	var out, errOut bytes.Buffer
	start := time.Now()
	code := run(t.Context(), args, &out, &errOut)
	took := time.Since(start)
	if took > d+slack {
		t.Errorf("wayfinder %s took %v; want at most -timeout %v + %v", strings.Join(args, " "), took.Round(time.Millisecond), d, slack)
	}
	if code != 1 {
		t.Errorf("wayfinder %s = exit %d, want 1; stdout %q stderr %q", strings.Join(args, " "), code, out.String(), errOut.String())
	}
	for _, w := range want {
		if !strings.Contains(errOut.String(), w) {
			t.Errorf("wayfinder %s printed\n%s\nwant %q in it", strings.Join(args, " "), errOut.String(), w)
		}
	}
}

// TestTimeoutFrozen: against a registry that accepts connections and
// never answers, every command returns after -timeout and says so.
func TestTimeoutFrozen(t *testing.T) {
	for _, scheme := range []string{"consul", "etcd"} {
		addr := registrytest.NewFrozenListener(t)
		for name, args := range registryCommands(scheme + "://" + addr) {
			t.Run(scheme+"/"+name, func(t *testing.T) {
				t.Parallel()
				runBounded(t, 2*time.Second, args, addr+" did not answer ", "frozen", "-timeout (2s)")
			})
		}
	}
}

// TestTimeoutRefused: where nothing listens, every command fails with
// "refused", within -timeout.
func TestTimeoutRefused(t *testing.T) {
	for _, scheme := range []string{"consul", "etcd"} {
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		for name, args := range registryCommands(scheme + "://" + addr) {
			t.Run(scheme+"/"+name, func(t *testing.T) {
				t.Parallel()
				runBounded(t, 5*time.Second, args, "nothing listens at "+addr+": the connection was refused")
			})
		}
	}
}

// TestTimeoutNotRegistry: an address that answers HTTP 404 is
// "something answered", not "no answer".
func TestTimeoutNotRegistry(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	for _, scheme := range []string{"consul", "etcd"} {
		for name, args := range registryCommands(scheme + "://" + addr) {
			t.Run(scheme+"/"+name, func(t *testing.T) {
				t.Parallel()
				runBounded(t, 5*time.Second, args, "something at "+addr+" answered, but not as")
			})
		}
	}
}

// TestTimeoutCauses: each cause a backend reports reads differently,
// shown with the memory backend's outage switch.
func TestTimeoutCauses(t *testing.T) {
	for _, c := range []struct {
		cause registry.Cause
		err   error
		want  string
	}{
		{registry.CauseRefused, syscall.ECONNREFUSED, "nothing listens at mem://cli-%s: the connection was refused"},
		{registry.CauseNoAnswer, nil, "mem://cli-%s did not answer within 1s"},
		{registry.CauseNotRegistry, nil, "something at mem://cli-%s answered, but not as a registry does"},
		{registry.CauseServer, nil, "the registry at mem://cli-%s answered, but with an error"},
	} {
		name := strings.ReplaceAll(strings.Fields(c.cause.String())[0], "(", "") + fmt.Sprint(int(c.cause))
		store := memory.Named("cli-" + name)
		store.SetOutage(&registry.UnavailableError{Registry: "mem://cli-" + name, Cause: c.cause, Bound: 30 * time.Second, Err: c.err})
		for cmd, args := range registryCommands("mem://cli-" + name) {
			if cmd == "call" {
				continue // calls need instances, which an outage hides
			}
			t.Run(name+"/"+cmd, func(t *testing.T) {
				t.Parallel()
				runBounded(t, time.Second, args, fmt.Sprintf(c.want, name))
			})
		}
	}
}

// TestHelpSaysTimeout: the default -timeout is in the help.
func TestHelpSaysTimeout(t *testing.T) {
	out, _, _ := wf(t, "help")
	if !strings.Contains(out, fmt.Sprintf("-timeout (default %v)", defaultTimeout)) {
		t.Errorf("wayfinder help says nothing of -timeout's default:\n%s", out)
	}
	for cmd := range registryCommands("mem://") {
		out, _, _ := wf(t, cmd, "-h")
		if !strings.Contains(out, "-timeout duration") || !strings.Contains(out, fmt.Sprintf("(default %v)", defaultTimeout)) {
			t.Errorf("wayfinder %s -h shows no -timeout with its default:\n%s", cmd, out)
		}
	}
}
