package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wayfinder-rpc/wayfinder/hello/faultdemo"
	"github.com/wayfinder-rpc/wayfinder/internal/backoff"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul" // consul:// URLs, and its address checks
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	_ "github.com/wayfinder-rpc/wayfinder/registry/etcd"      // etcd:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/memory"    // mem:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/zookeeper" // zk:// URLs
)

// defaultTimeout is the default of every command's -timeout: how long a
// command waits for its registry's answers.
const defaultTimeout = 10 * time.Second

// timeoutFlag adds -timeout to fs, saying what it bounds.
func timeoutFlag(fs *flag.FlagSet, what string) *time.Duration {
	return fs.Duration("timeout", defaultTimeout, what)
}

// positive checks a -timeout value.
func positive(d time.Duration) error {
	if d <= 0 {
		return usageError("-timeout must be positive")
	}
	return nil
}

func flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned and printed once by run
	return fs
}

// parse parses flags, which may come before, between or after the
// positional arguments ("call URL SayHello -n 3" works), and checks the
// number of positional arguments. "--" ends the flags.
func parse(fs *flag.FlagSet, args []string, positional int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, helpRequested{fs}
			}
			return nil, usageError(err.Error())
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if i := len(args) - len(rest); i > 0 && args[i-1] == "--" {
			pos = append(pos, rest...) // after "--", all positional
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if len(pos) != positional {
		return nil, usageError(fmt.Sprintf("want %d argument(s), got %d", positional, len(pos)))
	}
	return pos, nil
}

// openTarget opens the registry of a "<registry-url>/<service>" target.
// It returns the registry's URL too, for explain.
// lookupTarget opens raw's registry and looks its service up, failing
// with advice when the registry is unreachable or the service has no
// instances. The caller closes the registry.
func lookupTarget(ctx context.Context, raw string, timeout time.Duration) (registry.Registry, string, []registry.Instance, error) {
	reg, svc, u, err := openTarget(ctx, raw, timeout)
	if err != nil {
		return nil, "", nil, err
	}
	insts, err := reg.Lookup(ctx, svc)
	switch {
	case err != nil:
		err = explain(u, err, timeout)
	case len(insts) == 0:
		err = noInstances(ctx, reg, u, svc)
	}
	if err != nil {
		reg.Close()
		return nil, "", nil, err
	}
	return reg, svc, insts, nil
}

func openTarget(ctx context.Context, raw string, timeout time.Duration) (registry.Registry, string, *url.URL, error) {
	t, err := registry.ParseTarget(raw)
	if err != nil {
		return nil, "", nil, explain(nil, err, timeout)
	}
	reg, err := registry.OpenURL(ctx, t.Registry)
	if err != nil {
		return nil, "", nil, explain(t.Registry, err, timeout)
	}
	return reg, t.Service, t.Registry, nil
}

// explain adds advice to the errors a user can act on: a registry URL
// that is not one, and a registry that could not be used, by cause. u is
// the registry's URL, or nil if it did not parse; timeout is the
// command's -timeout, which ended a call that ends with
// context.DeadlineExceeded.
func explain(u *url.URL, err error, timeout time.Duration) error {
	var h hintError
	switch {
	case err == nil || errors.As(err, &h):
		return err
	case errors.Is(err, registry.ErrInvalidURL) && strings.Contains(err.Error(), "parameter"):
		return err // it lists the known parameters
	case errors.Is(err, registry.ErrInvalidURL), errors.Is(err, registry.ErrUnknownScheme):
		return hintError{err, "hint: a registry URL is mem://, consul://host:8500, etcd://host:2379[,host:2379] or zk://host:2181[,host:2181];\n" +
			"      a service target adds the service as the path: consul://127.0.0.1:8500/hello, mem:///hello"}
	case u != nil && (errors.Is(err, registry.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)):
		return hintError{err, unreachableHint(u, err, timeout)}
	}
	return err
}

// cause reads why a registry could not be used: from the backend's
// *registry.UnavailableError, else from the error itself (a Consul
// agent's HTTP answer, a refused connection, a deadline). bound is how
// long the call waited when the cause is no answer and the backend said,
// else 0.
func cause(u *url.URL, err error, timeout time.Duration) (c registry.Cause, bound time.Duration) {
	var ue *registry.UnavailableError
	if errors.As(err, &ue) && ue.Cause != registry.CauseUnknown {
		c, bound = ue.Cause, ue.Bound
	} else if u.Scheme == "consul" && agentAnswered(err) {
		c = registry.CauseNotRegistry
		if se := (api.StatusError{}); errors.As(err, &se) && se.Code >= 500 {
			c = registry.CauseServer
		}
	} else {
		c = driver.Classify(err)
	}
	if c == registry.CauseNoAnswer && bound > timeout {
		bound = timeout // every call runs under -timeout
	}
	return c, bound
}

// agentAnswered reports whether err is a Consul agent's answer (an HTTP
// error status, or a body that is not a usable result) rather than no
// answer at all.
func agentAnswered(err error) bool {
	var se api.StatusError
	var syn *json.SyntaxError
	var ute *json.UnmarshalTypeError
	if errors.As(err, &se) || errors.As(err, &syn) || errors.As(err, &ute) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "X-Consul-Index") || strings.Contains(s, "malformed health entry") || strings.Contains(s, "no query metadata")
}

func unreachableHint(u *url.URL, err error, timeout time.Duration) string {
	where := func(env, def string) string {
		if u.Host != "" {
			return u.Host
		}
		if v := os.Getenv(env); v != "" {
			return v + " (from " + env + ")"
		}
		return def + " (the default; the URL has no host and " + env + " is unset)"
	}
	kind, at, api, fix := "registry", show(u), "address", ""
	switch u.Scheme {
	case "consul":
		kind, at, api = "Consul agent", where("CONSUL_HTTP_ADDR", "localhost:8500"), "HTTP API address (port 8500 by default)"
		fix = "\n      Put its address in the URL (consul://host:8500) or in CONSUL_HTTP_ADDR."
	case "etcd":
		kind, at, api = "etcd", where("ETCDCTL_ENDPOINTS", "127.0.0.1:2379"), "client address (port 2379 by default)"
		fix = "\n      Put its endpoints in the URL (etcd://host:2379,host:2379) or in ETCDCTL_ENDPOINTS;" +
			"\n      for TLS or authentication, set ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY, ETCDCTL_USER."
	}
	switch c, bound := cause(u, err, timeout); c {
	case registry.CauseRefused:
		return "hint: nothing listens at " + at + ": the connection was refused. Is the " + kind + " running there?" + fix
	case registry.CauseNoAnswer:
		within := "in time" // the backend's own bound or -timeout, whichever came first
		if bound > 0 {
			within = fmt.Sprintf("within %v", bound)
		}
		return fmt.Sprintf("hint: %s did not answer %s: it accepted the connection (or the attempt hangs) and said nothing;\n"+
			"      a frozen or overloaded %s, or a firewall that drops packets. -timeout (%v) sets how long to wait.", at, within, kind, timeout)
	case registry.CauseNotRegistry:
		return "hint: something at " + at + " answered, but not as a " + kind + " does (above). Is that a " + kind + "'s " + api + "?"
	case registry.CauseServer:
		return "hint: the " + kind + " at " + at + " answered, but with an error (above); its log, or its servers', says why."
	}
	return "hint: could not use the " + kind + " at " + at + " (above). Is it running?" + fix
}

// show is a registry URL as a user would write it: "mem://", not "mem:".
func show(u *url.URL) string {
	s := u.Redacted()
	if u.Host == "" && !strings.HasPrefix(s, u.Scheme+"://") {
		s = u.Scheme + "://" + strings.TrimPrefix(s, u.Scheme+":")
	}
	return s
}

// noInstances is the error for a service with no instances: it names the
// services the registry does have, since the usual cause is a typo or
// the wrong registry.
func noInstances(ctx context.Context, reg registry.Registry, u *url.URL, svc string) error {
	err := fmt.Errorf("service %q has no instances at %s", svc, show(u))
	if u.Scheme == "mem" {
		return hintError{err, "hint: a mem:// registry lives inside one process, so each wayfinder command starts with an empty one;\n" +
			"      to share a registry between processes, use Consul or etcd"}
	}
	lister, ok := reg.(registry.ServiceLister)
	if !ok {
		return err
	}
	names, lerr := lister.Services(ctx)
	switch {
	case lerr != nil:
		return err
	case slices.Contains(names, svc) && u.Scheme == "etcd":
		// etcd has no health checks: the keys are there, but no value
		// decodes as an instance.
		return hintError{err, "hint: there are keys under its prefix, but none holds an instance: each value must be Wayfinder's or\n" +
			"      etcd naming's ({\"Addr\":\"host:port\"}) with a dialable address; the etcd backend's Warn log names each skipped key"}
	case slices.Contains(names, svc):
		// Consul lists a service whose instances are all unhealthy.
		return hintError{err, "hint: it is registered, but none of its instances passes its health checks"}
	case u.Scheme == "etcd":
		// The usual cause is a key layout: etcd naming's target
		// "foo/bar/svc" is service svc under prefix foo/bar.
		have := "the registry has no services at all under this prefix; is this the right registry or prefix?"
		if len(names) > 0 {
			have = "the registry has: " + strings.Join(names, ", ")
		}
		return hintError{err, "hint: " + strings.TrimSuffix(have, ".") + "\n" +
			"      Services registered with etcd's endpoints.Manager for target \"foo/bar/" + svc + "\" are found with\n" +
			"      etcd://host:2379/" + svc + "?prefix=foo/bar (target \"" + svc + "\": ?prefix=, target \"/" + svc + "\": ?prefix=/)"}
	case len(names) == 0:
		return hintError{err, "hint: the registry has no services at all; is this the right registry?"}
	}
	return hintError{err, "hint: the registry has: " + strings.Join(names, ", ")}
}

func cmdServices(ctx context.Context, args []string, out io.Writer) error {
	fs := flags("services")
	timeout := timeoutFlag(fs, "how long to wait for the registry's answers (the whole command)")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if err := positive(*timeout); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	u, _ := url.Parse(pos[0])
	reg, err := registry.Open(ctx, pos[0])
	if err != nil {
		return explain(u, err, *timeout)
	}
	defer reg.Close()
	lister, ok := reg.(registry.ServiceLister)
	if !ok {
		return fmt.Errorf("the %s backend cannot list services", strings.SplitN(pos[0], ":", 2)[0])
	}
	names, err := lister.Services(ctx)
	if err != nil {
		return explain(u, err, *timeout)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tINSTANCES")
	for _, n := range names {
		insts, err := reg.Lookup(ctx, n)
		count := fmt.Sprint(len(insts))
		if err != nil {
			count = "error: " + err.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\n", n, count)
	}
	return tw.Flush()
}

// jsonInstance is the stable JSON form of an instance for scripts.
type jsonInstance struct {
	ID       string            `json:"id"`
	Service  string            `json:"service"`
	Address  string            `json:"address"`
	Version  string            `json:"version,omitempty"`
	Zone     string            `json:"zone,omitempty"`
	Weight   int               `json:"weight"`
	Tags     []string          `json:"tags,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Registered is when its registrant registered or last changed it,
	// if a Wayfinder Registrar wrote it.
	Registered time.Time `json:"registered,omitzero"`
	// Problems are fields the backend could not read and replaced with
	// their defaults, such as a foreign Meta.wayfinder_weight.
	Problems []string `json:"problems,omitempty"`
}

func toJSON(insts []registry.Instance) []jsonInstance {
	out := make([]jsonInstance, len(insts))
	for i, in := range insts {
		out[i] = jsonInstance{ID: in.ID, Service: in.Service, Address: in.Address, Version: in.Version, Zone: in.Zone,
			Weight: in.EffectiveWeight(), Tags: in.Tags, Metadata: in.Metadata, Registered: in.Registered}
	}
	return out
}

func writeTable(out io.Writer, insts []registry.Instance) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tVERSION\tZONE\tWEIGHT\tTAGS\tMETADATA")
	for _, in := range insts {
		var md []string
		for _, k := range slices.Sorted(maps.Keys(in.Metadata)) {
			md = append(md, k+"="+in.Metadata[k])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", in.ID, in.Address, dash(in.Version), dash(in.Zone),
			in.EffectiveWeight(), dash(strings.Join(in.Tags, ",")), dash(strings.Join(md, ",")))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdInstances(ctx context.Context, args []string, out io.Writer) error {
	fs := flags("instances")
	format := fs.String("o", "table", "output format: table or json")
	timeout := timeoutFlag(fs, "how long to wait for the registry's answers (the whole command)")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if *format != "table" && *format != "json" {
		return usageError(fmt.Sprintf("-o %q: want table or json", *format))
	}
	if err := positive(*timeout); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	reg, _, insts, err := lookupTarget(ctx, pos[0], *timeout)
	if err != nil {
		return err
	}
	defer reg.Close()
	problems := fieldProblems(reg, insts)
	if *format == "json" {
		js := toJSON(insts)
		for i := range js {
			for _, p := range problems {
				if p.ID == js[i].ID {
					js[i].Problems = append(js[i].Problems, p.String())
				}
			}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(js)
	}
	if err := writeTable(out, insts); err != nil {
		return err
	}
	for _, p := range problems {
		fmt.Fprintln(out, "warning:", p)
	}
	return nil
}

// fieldProblems returns the fields the backend dropped from insts: the
// instances are listed with defaults for them.
func fieldProblems(reg registry.Registry, insts []registry.Instance) []registry.FieldProblem {
	fr, ok := reg.(registry.FieldProblemReporter)
	if !ok || len(insts) == 0 {
		return nil
	}
	ids := map[string]bool{}
	for _, in := range insts {
		ids[in.ID] = true
	}
	var out []registry.FieldProblem
	for _, p := range fr.FieldProblems(insts[0].Service) {
		if ids[p.ID] {
			out = append(out, p)
		}
	}
	return out
}

func cmdWatch(ctx context.Context, args []string, out io.Writer) error {
	fs := flags("watch")
	timeout := timeoutFlag(fs, "how long to wait for the registry's first answer; later errors are shown and retried until Ctrl-C")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if err := positive(*timeout); err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	reg, svc, u, err := openTarget(octx, pos[0], *timeout)
	if err != nil {
		return err
	}
	defer reg.Close()
	w, err := reg.Watch(octx, svc)
	if err != nil {
		return explain(u, err, *timeout)
	}
	defer w.Close()
	return explain(u, watchLoop(ctx, w, svc, out, time.Now, *timeout), *timeout)
}

// watchLoop prints each change as a diff against the previous set. Each
// event line starts with the local time it arrived and the time since
// the previous line (for the first, since the watch began), and a set's
// line ends with the registry's index of it when the watcher reports one
// (registry.IndexedWatcher); an added or changed instance says how long
// after its registration it arrived. With no set within first, it
// returns the last error, or the deadline's if the registry said nothing.
func watchLoop(ctx context.Context, w registry.Watcher, svc string, out io.Writer, now func() time.Time, first time.Duration) error {
	last := now()
	fctx, cancel := context.WithTimeout(ctx, first) // bounds the first set
	defer cancel()
	var prev map[string]registry.Instance
	var lastErr error
	iw, _ := w.(registry.IndexedWatcher)
	for {
		nctx := ctx
		if prev == nil {
			nctx = fctx
		}
		insts, err := w.Next(nctx)
		t := now()
		stamp := fmt.Sprintf("%s %9s", t.Format("15:04:05.000"), fmt.Sprintf("+%.3fs", t.Sub(last).Seconds()))
		last = t
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, registry.ErrClosed) {
				return nil
			}
			if prev == nil && fctx.Err() != nil {
				if lastErr == nil || errors.Is(err, registry.ErrUnavailable) {
					lastErr = err
				}
				return fmt.Errorf("watch %q: no set within -timeout %v: %w", svc, first, lastErr)
			}
			lastErr = err
			kept := "last set kept"
			if prev == nil {
				kept = "no set yet"
			}
			fmt.Fprintf(out, "%s error (%s; retrying): %v\n", stamp, kept, err)
			continue
		}
		cur := map[string]registry.Instance{}
		for _, in := range insts {
			cur[in.ID] = in
		}
		fmt.Fprintf(out, "%s %s: %d instance(s)%s\n", stamp, svc, len(insts), indexSuffix(iw))
		if prev == nil {
			for _, in := range insts {
				fmt.Fprintf(out, "    = %s\n", describe(in))
			}
		} else {
			for _, id := range slices.Sorted(maps.Keys(prev)) {
				if _, ok := cur[id]; !ok {
					fmt.Fprintf(out, "    - %s\n", describe(prev[id]))
				}
			}
			for _, in := range insts {
				old, ok := prev[in.ID]
				switch {
				case !ok:
					fmt.Fprintf(out, "    + %s%s\n", describe(in), propagation(t, in))
				case !old.Equal(in):
					fmt.Fprintf(out, "    ~ %s%s\n", describe(in), propagation(t, in))
				}
			}
		}
		prev = cur
	}
}

// indexSuffix is " index=<index>" for a watcher that reports the
// registry's index of its set, quoted if it has spaces (Consul with
// several datacenters: index="dc1=120 dc2=87"); "" otherwise.
func indexSuffix(iw registry.IndexedWatcher) string {
	if iw == nil {
		return ""
	}
	idx := iw.Index()
	switch {
	case idx == "":
		return ""
	case strings.ContainsAny(idx, " \t\"="):
		return " index=" + strconv.Quote(idx)
	}
	return " index=" + idx
}

// propagation is how long a new or changed instance took to arrive: the
// time since its registrant's Register stamped it (on the registrant's
// clock, so skew between machines shows here; a negative delay shows as
// 0). Instances written by other tools carry no stamp.
func propagation(arrived time.Time, in registry.Instance) string {
	if in.Registered.IsZero() {
		return ""
	}
	d := max(arrived.Sub(in.Registered), 0)
	if d < time.Second {
		d = d.Round(10 * time.Microsecond)
	} else {
		d = d.Round(time.Millisecond)
	}
	return fmt.Sprintf(" (%v after its registration)", d)
}

func describe(in registry.Instance) string {
	s := fmt.Sprintf("%s %s weight=%d", in.ID, in.Address, in.EffectiveWeight())
	if in.Version != "" {
		s += " version=" + in.Version
	}
	if in.Zone != "" {
		s += " zone=" + in.Zone
	}
	if len(in.Tags) > 0 {
		s += " tags=" + strings.Join(in.Tags, ",")
	}
	return s
}

// clock is the local time to the millisecond, as watch prints it, so that
// a change made here can be matched with the line that shows it arriving.
func clock() string { return time.Now().Format("15:04:05.000") }

func cmdRegister(ctx context.Context, args []string, out io.Writer) error {
	fs := flags("register")
	addr := fs.String("addr", "", "address clients dial (host:port); required")
	id := fs.String("id", "", "instance ID (default: <service>-<random>)")
	version := fs.String("version", "", "version")
	zone := fs.String("zone", "", "zone")
	weight := fs.Int("weight", 0, "weight (0: the default, 1)")
	tags := fs.String("tags", "", "comma-separated tags")
	meta := fs.String("meta", "", "comma-separated key=value metadata")
	once := fs.Bool("once", false, "register and exit without deregistering; Consul's TTL check and etcd's lease then expire it")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the registry to accept the registration")
	check := fs.String("check", "tcp", "Consul: how the agent probes -addr: tcp (connect), grpc (grpc.health.v1) or none (the TTL heartbeat only); etcd has no checks")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if err := positive(*timeout); err != nil {
		return err
	}
	if *addr == "" {
		return usageError("-addr is required")
	}
	probe, ok := map[string]consul.AddressCheck{"tcp": consul.AddressCheckTCP, "grpc": consul.AddressCheckGRPC, "none": consul.AddressCheckNone}[*check]
	if !ok {
		return usageError(fmt.Sprintf("-check %q: want tcp, grpc or none", *check))
	}
	rctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	reg, svc, u, err := openTarget(rctx, pos[0], *timeout)
	if err != nil {
		return err
	}
	defer reg.Close()
	inst := registry.Instance{ID: *id, Service: svc, Address: *addr, Version: *version, Zone: *zone, Weight: *weight}
	if inst.ID == "" {
		inst.ID = svc + "-" + registry.NewID()[:12]
	}
	if *tags != "" {
		inst.Tags = strings.Split(*tags, ",")
	}
	if *meta != "" {
		inst.Metadata = map[string]string{}
		for _, kv := range strings.Split(*meta, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return usageError(fmt.Sprintf("-meta %q: want key=value", kv))
			}
			inst.Metadata[k] = v
		}
	}
	if err := inst.Validate(); err != nil {
		return err
	}
	// This process does not serve -addr: with Consul, the agent checks
	// it, so that a dead server leaves within seconds, not a TTL.
	register := reg.Register
	if cr, ok := reg.(*consul.Registry); ok {
		register = func(ctx context.Context, inst registry.Instance) error {
			return cr.RegisterWithAddressCheck(ctx, inst, probe)
		}
	}
	err = registerUntil(rctx, register, inst, out, *timeout)
	cancel()
	if err != nil {
		if ctx.Err() == nil && rctx.Err() != nil && !errors.Is(err, registry.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", registry.ErrUnavailable, err) // a timeout is the registry not answering
		}
		// Remove what a backend may still hold or retry.
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		reg.Deregister(dctx, inst)
		cancel()
		return explain(u, err, *timeout)
	}
	fmt.Fprintf(out, "%s registered %s\n", clock(), describe(inst))
	if *once {
		return nil
	}
	<-ctx.Done()
	dctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := reg.Deregister(dctx, inst); err != nil {
		return explain(u, err, *timeout)
	}
	fmt.Fprintf(out, "%s deregistered %s\n", clock(), inst.ID)
	return nil
}

// registerUntil calls Register until it succeeds, fails for a reason
// that retrying cannot fix, or ctx ends: a registry that is down now
// (a Consul agent restarting refuses connections, and Consul's Register
// returns at once) may be up before the -timeout deadline. It says once
// that it is waiting.
func registerUntil(ctx context.Context, register func(context.Context, registry.Instance) error, inst registry.Instance, out io.Writer, timeout time.Duration) error {
	bo := backoff.Backoff{Base: 100 * time.Millisecond, Max: 2 * time.Second}
	for {
		err := register(ctx, inst)
		if err == nil || !errors.Is(err, registry.ErrUnavailable) || ctx.Err() != nil || deniedErr(err) {
			return err
		}
		if bo.Failures() == 0 {
			fmt.Fprintf(out, "%s the registry is unavailable (%v); retrying for up to %v (-timeout)\n", clock(), err, timeout)
		}
		if !backoff.Sleep(ctx, bo.Next()) {
			return err
		}
	}
}

// deniedErr reports a credentials error, which retrying with the same
// configuration cannot fix. Every backend wraps
// registry.ErrPermissionDenied for one.
func deniedErr(err error) bool {
	return errors.Is(err, registry.ErrPermissionDenied)
}

func cmdDeregister(ctx context.Context, args []string, out io.Writer) error {
	fs := flags("deregister")
	id := fs.String("id", "", "instance ID; required")
	force := fs.Bool("force", false, "deregister even if the ID is not among the service's healthy instances")
	timeout := timeoutFlag(fs, "how long to wait for the registry's answers (the whole command)")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if *id == "" {
		return usageError("-id is required")
	}
	if err := positive(*timeout); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	reg, svc, u, err := openTarget(ctx, pos[0], *timeout)
	if err != nil {
		return err
	}
	defer reg.Close()
	if !*force {
		// Deregistering is idempotent, so a mistyped ID would succeed
		// silently: check first.
		insts, err := reg.Lookup(ctx, svc)
		if err != nil {
			return explain(u, err, *timeout)
		}
		ids := make([]string, len(insts))
		for i, in := range insts {
			ids[i] = in.ID
		}
		if !slices.Contains(ids, *id) {
			have := "the service has no healthy instances"
			if len(ids) > 0 {
				have = "its instances: " + strings.Join(ids, ", ")
			}
			return hintError{fmt.Errorf("service %q has no instance %q at %s; nothing deregistered", svc, *id, show(u)),
				"hint: " + have + ". Add -force to deregister an instance that is registered but unhealthy."}
		}
	}
	if err := reg.Deregister(ctx, registry.Instance{ID: *id, Service: svc}); err != nil {
		return explain(u, err, *timeout)
	}
	fmt.Fprintf(out, "%s deregistered %s/%s\n", clock(), svc, *id)
	return nil
}

func cmdDemo(ctx context.Context, args []string, out io.Writer) error {
	c := faultdemo.DefaultConfig()
	fs := flags("demo")
	faultdemo.RegisterFlags(fs, &c)
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	ok, err := faultdemo.Run(ctx, c, out)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("the demo saw failed calls")
	}
	return nil
}
