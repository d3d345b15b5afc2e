package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/consul"
	"github.com/wayfinder-rpc/wayfinder/registry/etcd"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// serverLoad measures the load that client processes watching services
// put on the registry's servers: cfg.LoadClients child processes (this
// binary, re-executed; see ChildMain), each watching the same
// cfg.LoadServices services through one resolver.Cache (one upstream
// watch per service per process, resolvers on a fake ClientConn, nothing
// dialled), with loadBase instances each.
//
// It runs, one after another and each on servers of its own:
//
//   - consul_streaming: a Consul server (a server-mode agent with a data
//     dir) and a client agent joined to it, with Consul's default
//     use_streaming_backend = true; the children and the registrant talk
//     to the client agent's HTTP API, as applications on a node do;
//   - consul_blocking_query: the same with use_streaming_backend = false
//     on the client agent;
//   - etcd: one member, which the children and the registrant talk to
//     directly.
//
// Only the server process is measured (the Consul server, not the
// client agent; the etcd member): its CPU time (utime + stime from
// /proc/<pid>/stat) and the bytes its established TCP sockets sent
// (bytes_sent from `ss -tinp`), over three windows: floor (the
// registrations, no children), idle (the children watching, nothing
// changing) and change (cfg.LoadRate registrations or deregistrations
// per second, spread over the services). Each figure is per minute.
func serverLoad(tb testing.TB, _ *Backend, cfg Config) ([]Sample, error) {
	if cfg.LoadClients < 1 || cfg.LoadClients > maxLoadClients || cfg.LoadServices < 1 || cfg.LoadServices > maxLoadServices {
		return nil, fmt.Errorf("server load: %d clients × %d services: want 1..%d × 1..%d", cfg.LoadClients, cfg.LoadServices, maxLoadClients, maxLoadServices)
	}
	if cfg.LoadRate <= 0 || cfg.LoadIdle <= 0 || cfg.LoadChange <= 0 {
		return nil, fmt.Errorf("server load: rate %v, windows %v and %v: want positive", cfg.LoadRate, cfg.LoadIdle, cfg.LoadChange)
	}
	var out []Sample
	for _, be := range cfg.Backends {
		var targets []func(testing.TB) (*loadTarget, error)
		switch be {
		case "consul":
			targets = append(targets,
				func(tb testing.TB) (*loadTarget, error) { return consulLoadTarget(tb, cfg, true) },
				func(tb testing.TB) (*loadTarget, error) { return consulLoadTarget(tb, cfg, false) })
		case "etcd":
			targets = append(targets, etcdLoadTarget)
		default:
			continue // memory has no server; others are not measured here
		}
		for _, mk := range targets {
			tg, err := mk(tb)
			if err != nil {
				return nil, err
			}
			s, err := serverLoadOne(tb, cfg, tg)
			tg.stop()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", tg.variant, err)
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// Bounds of the scenario's sizes, so that a typo cannot fork a thousand
// processes.
const (
	maxLoadClients  = 64
	maxLoadServices = 1000
	// loadBase is the number of instances of each service; the change
	// window adds and removes one more.
	loadBase = 2
	// loadSettle is the pause between the children's convergence and
	// the idle window.
	loadSettle = 3 * time.Second
)

// loadTarget is one configuration of servers under measurement.
type loadTarget struct {
	variant string
	backend string // the children's: "consul" or "etcd"
	addr    string // what the children talk to
	pid     int    // the server process measured
	reg     registry.Registry
	stop    func() // kills the servers
}

func consulLoadTarget(tb testing.TB, cfg Config, streaming bool) (*loadTarget, error) {
	server := testenv.StartConsulWith(tb, testenv.ConsulOptions{Server: true})
	// Every child's blocking queries come from 127.0.0.1: lift the
	// agent's per-client connection limit (200) above them.
	limit := 4*cfg.LoadClients*cfg.LoadServices + 256
	// Its periodic anti-entropy sync (ae_interval, 1 min by default, with
	// stagger) has the server send every service and check of the node:
	// the registrant's cost, not the watchers', landing in a window or
	// not by chance. An hour keeps it out of the windows; the sync on
	// change, which carries registrations and deregistrations, is
	// untouched.
	agent := testenv.StartConsulWith(tb, testenv.ConsulOptions{
		Client: true, RetryJoin: []string{server.SerfLANAddr()}, NoStreamingBackend: !streaming,
		HCL: fmt.Sprintf("ae_interval = \"1h\"\nlimits {\n http_max_conns_per_client = %d\n}\n", limit),
	})
	reg, err := consul.New(agent.HTTPAddr())
	if err != nil {
		return nil, err
	}
	variant := "consul_blocking_query"
	if streaming {
		variant = "consul_streaming"
	}
	return &loadTarget{
		variant: variant, backend: "consul", addr: agent.HTTPAddr(), pid: server.Pid(), reg: reg,
		stop: func() {
			reg.Close()
			agent.Kill()
			server.Kill()
		},
	}, nil
}

func etcdLoadTarget(tb testing.TB) (*loadTarget, error) {
	m := testenv.StartEtcd(tb)
	reg, err := etcd.New([]string{m.ClientAddr})
	if err != nil {
		return nil, err
	}
	return &loadTarget{
		variant: "etcd", backend: "etcd", addr: m.ClientAddr, pid: m.Pid(), reg: reg,
		stop: func() {
			reg.Close()
			m.Kill(tb)
		},
	}, nil
}

func serverLoadOne(tb testing.TB, cfg Config, tg *loadTarget) (Sample, error) {
	ctx := tb.Context()
	if tg.pid == 0 {
		return Sample{}, errors.New("the server is not running")
	}
	svcs, want, extra := loadServices(cfg.LoadServices)
	if err := registerSettled(ctx, tg.reg, svcs, want); err != nil {
		return Sample{}, err
	}
	m := map[string]float64{
		"clients":           float64(cfg.LoadClients),
		"services":          float64(len(svcs)),
		"instances_per_svc": loadBase,
	}
	sleep(ctx, 2*time.Second)
	if err := measureWindow(ctx, tg.pid, cfg.LoadIdle, "floor", m, nil); err != nil {
		return Sample{}, err
	}

	t0 := time.Now()
	f, err := startFleet(tb, cfg.LoadClients, loadChildConfig{Backend: tg.backend, Addr: tg.addr, Services: svcs})
	if err != nil {
		return Sample{}, err
	}
	defer f.stop()
	if err := f.waitConverged(ctx, 60*time.Second, want); err != nil {
		return Sample{}, fmt.Errorf("initial sets: %w", err)
	}
	m["setup_s"] = time.Since(t0).Seconds()
	// A child shows a service's set from its first read; the watch that
	// follows is set up just after (etcd's watch creation, the Consul
	// agent's subscription and snapshot for streaming). Keep that out of
	// the idle window.
	sleep(ctx, loadSettle)
	if err := measureWindow(ctx, tg.pid, cfg.LoadIdle, "idle", m, nil); err != nil {
		return Sample{}, err
	}

	ch := &loadChanges{reg: tg.reg, extra: extra, has: make([]bool, len(svcs))}
	every := time.Duration(float64(time.Second) / cfg.LoadRate)
	if err := measureWindow(ctx, tg.pid, cfg.LoadChange, "change", m, &ticking{every: every, f: func() error { return ch.next(ctx) }}); err != nil {
		return Sample{}, err
	}
	m["changes"] = float64(ch.n)
	for i := range svcs {
		if ch.has[i] {
			want[i] = append(want[i], extra[i])
		}
	}
	if err := fleetMetrics(ctx, f, tg.backend, want, m); err != nil {
		return Sample{}, err
	}
	return Sample{Variant: tg.variant, Metrics: m}, nil
}

// loadServices names n services and returns, for each, the loadBase
// instances it holds and the extra one the change window adds and
// removes.
func loadServices(n int) (svcs []string, want [][]registry.Instance, extra []registry.Instance) {
	svcs = make([]string, n)
	want = make([][]registry.Instance, len(svcs)) // what each service holds
	port := 20000
	for i := range svcs {
		svcs[i] = uniqueService("load")
		for j := range loadBase + 1 {
			want[i] = append(want[i], registry.Instance{ID: fmt.Sprintf("i%d", j), Service: svcs[i], Address: fmt.Sprintf("127.0.0.1:%d", port)})
			port++
		}
	}
	extra = make([]registry.Instance, len(svcs))
	for i := range want {
		extra[i], want[i] = want[i][loadBase], want[i][:loadBase]
	}
	return svcs, want, extra
}

// registerSettled registers want[i] in svcs[i] and waits until a Lookup
// of each service shows them all.
func registerSettled(ctx context.Context, reg registry.Registry, svcs []string, want [][]registry.Instance) error {
	for i := range svcs {
		for _, in := range want[i] {
			if err := register(ctx, reg, in, 10*time.Second); err != nil {
				return err
			}
		}
	}
	// Let the registrations settle before the floor is measured: a
	// client agent syncs them to the server once it has found it, up to
	// seconds after it started.
	for i, svc := range svcs {
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err := reg.Lookup(ctx, svc)
			if err == nil && len(got) == len(want[i]) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("Lookup(%q) = %d instances, %v after 30 s; want %d", svc, len(got), err, len(want[i]))
			}
			sleep(ctx, 100*time.Millisecond)
		}
	}
	return nil
}

// loadChanges is the change window's registry traffic: one service
// after another gains its extra instance, then loses it the next time
// round.
type loadChanges struct {
	reg   registry.Registry
	extra []registry.Instance
	has   []bool // whether service i holds its extra instance
	n     int    // changes made
}

func (c *loadChanges) next(ctx context.Context) error {
	i := c.n % len(c.has)
	var err error
	if c.has[i] {
		err = c.reg.Deregister(ctx, c.extra[i])
	} else {
		err = c.reg.Register(ctx, c.extra[i])
	}
	if err != nil {
		return err
	}
	c.has[i] = !c.has[i]
	c.n++
	return nil
}

// fleetMetrics adds to m how many client processes converged on want,
// and what their watches were.
func fleetMetrics(ctx context.Context, f *fleet, backend string, want [][]registry.Instance, m map[string]float64) error {
	conv, err := f.converged(ctx, 30*time.Second, want)
	if err != nil {
		return err
	}
	m["converged_children"] = float64(conv)
	st, err := f.stats(ctx, 10*time.Second)
	if err != nil {
		return err
	}
	minWatches := -1
	for _, s := range st {
		if minWatches < 0 || int(s["watches"]) < minWatches {
			minWatches = int(s["watches"])
		}
		m["streaming_queries"] += float64(s["streaming"])
		m["blocking_queries"] += float64(s["blocking"])
		m["unreported_queries"] += float64(s["unreported"])
		m["updates_seen"] += float64(s["updates"])
	}
	m["min_watches_per_child"] = float64(minWatches)
	if backend == "consul" {
		q := m["streaming_queries"] + m["blocking_queries"] + m["unreported_queries"]
		m["streamed_fraction"] = m["streaming_queries"] / max(q, 1)
	}
	return nil
}

// ticking calls f every every, from the window's start, until the
// window ends.
type ticking struct {
	every time.Duration
	f     func() error
}

// measureWindow samples the server's usage, waits d (calling tick.f
// meanwhile, if tick is not nil), samples again and stores the window's
// figures in m under name.
func measureWindow(ctx context.Context, pid int, d time.Duration, name string, m map[string]float64, tick *ticking) error {
	u0, err := sampleServer(pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	end := t0.Add(d)
	if tick == nil {
		sleep(ctx, d)
	} else {
		for next := t0; next.Before(end); next = next.Add(tick.every) {
			sleep(ctx, time.Until(next))
			if ctx.Err() != nil {
				break
			}
			if err := tick.f(); err != nil {
				return fmt.Errorf("%s window: %w", name, err)
			}
		}
		sleep(ctx, time.Until(end))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	u1, err := sampleServer(pid)
	if err != nil {
		return err
	}
	win := time.Since(t0)
	cpu, sent, closed := u0.until(u1)
	perMin := time.Minute.Seconds() / win.Seconds()
	m[name+"_window_s"] = win.Seconds()
	m[name+"_cpu_s_per_min"] = cpu.Seconds() * perMin
	m[name+"_cpu_pct"] = 100 * cpu.Seconds() / win.Seconds()
	m[name+"_kib_sent_per_min"] = float64(sent) / 1024 * perMin
	m[name+"_sockets_closed"] = float64(closed)
	return nil
}

// serverUsage is what a server process has used so far.
type serverUsage struct {
	cpu  time.Duration
	sent map[string]uint64 // bytes_sent by socket (local and peer address)
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go runs on.
const clockTick = 10 * time.Millisecond

// sampleServer reads pid's CPU time from /proc/<pid>/stat and the
// bytes_sent of each of its established TCP sockets from `ss -tinpH`.
func sampleServer(pid int) (serverUsage, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return serverUsage{}, err
	}
	// The command name, in parentheses, may hold spaces: count fields
	// from the last ')'. utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b)[i+1:])
	if i < 0 || len(f) < 13 {
		return serverUsage{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return serverUsage{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	u := serverUsage{cpu: time.Duration(ut+st) * clockTick, sent: map[string]uint64{}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ss", "-tinpH", "state", "established").Output()
	if err != nil {
		return serverUsage{}, fmt.Errorf("ss: %w", err)
	}
	u.sent, err = parseSS(out, pid)
	return u, err
}

// parseSS returns the bytes_sent of pid's sockets in the output of
// `ss -tinpH state established`, by "local peer" address: a line per
// socket (Recv-Q, Send-Q, local and peer address,
// users:((...,pid=N,...))) followed by an indented line of TCP info.
// Connections of the process to itself (a server-mode Consul agent's
// own RPCs to its server part) are left out: their bytes are sent to no
// other process.
func parseSS(out []byte, pid int) (map[string]uint64, error) {
	type sock struct{ local, peer string }
	sent := map[sock]uint64{}
	local := map[string]bool{}
	mark := fmt.Sprintf("pid=%d,", pid)
	var cur *sock
	for line := range strings.SplitSeq(string(out), "\n") {
		if line == "" {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			cur = nil
			if f := strings.Fields(line); len(f) >= 4 && strings.Contains(line, mark) {
				cur = &sock{f[2], f[3]}
				local[f[2]] = true
			}
			continue
		}
		if cur == nil {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "bytes_sent:"); ok {
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("ss: %q: %w", f, err)
				}
				sent[*cur] = n
			}
		}
		cur = nil
	}
	out2 := make(map[string]uint64, len(sent))
	for k, n := range sent {
		if !local[k.peer] {
			out2[k.local+" "+k.peer] = n
		}
	}
	return out2, nil
}

// until returns the CPU time and bytes sent from u to v, and the number
// of u's sockets that closed in between, whose bytes after u are not
// counted. A socket opened in between counts from 0.
func (u serverUsage) until(v serverUsage) (time.Duration, uint64, int) {
	var sent uint64
	closed := 0
	for k, n := range v.sent {
		if n0, ok := u.sent[k]; ok && n0 <= n {
			sent += n - n0
		} else if !ok {
			sent += n
		}
	}
	for k := range u.sent {
		if _, ok := v.sent[k]; !ok {
			closed++
		}
	}
	return v.cpu - u.cpu, sent, closed
}

// childEnv names the environment variable that makes this binary a
// scenario's child (ChildMain); its value is the child's configuration
// as JSON.
const childEnv = "WFBENCH_SERVER_LOAD_CHILD"

// loadChildConfig is what a server-load child watches.
type loadChildConfig struct {
	Backend  string   `json:"backend"` // "consul" or "etcd"
	Addr     string   `json:"addr"`
	Services []string `json:"services"`
}

// ChildMain runs this process as a child of the server-load scenario if
// the environment says so (the scenario re-executes its own binary) and
// returns its exit code and true; otherwise it returns false at once.
// wfbench's Main and the package's TestMain call it first.
//
// The child watches its services through one resolver.Cache and writes
// to stdout, a line each, "u <service index> <sorted addresses,
// comma-separated>" for every state its resolvers hand their ClientConn;
// "stats <seq> <key>=<value>..." for every "stats <seq>" line read from
// stdin. It exits when stdin closes.
func ChildMain() (int, bool) {
	js, ok := os.LookupEnv(childEnv)
	if !ok {
		return 0, false
	}
	var lc loadChildConfig
	if err := json.Unmarshal([]byte(js), &lc); err != nil {
		fmt.Fprintf(os.Stderr, "server-load child: %s: %v\n", childEnv, err)
		return 2, true
	}
	if err := runLoadChild(lc, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "server-load child: %v\n", err)
		return 1, true
	}
	return 0, true
}

func runLoadChild(lc loadChildConfig, in io.Reader, out io.Writer) error {
	var reg registry.Registry
	var creg *consul.Registry
	var err error
	switch lc.Backend {
	case "consul":
		creg, err = consul.New(lc.Addr)
		reg = creg
	case "etcd":
		reg, err = etcd.New([]string{lc.Addr})
	default:
		err = fmt.Errorf("unknown backend %q", lc.Backend)
	}
	if err != nil {
		return err
	}
	defer reg.Close()
	cache := resolver.NewCache(resolver.WithLinger(0))
	defer cache.Close()
	lw := &lineWriter{w: bufio.NewWriter(out)}
	b := resolver.NewBuilder(reg, resolver.WithCache(cache))
	var rs []gresolver.Resolver
	defer func() {
		for _, r := range rs {
			r.Close()
		}
	}()
	for i, svc := range lc.Services {
		r, err := b.Build(gresolver.Target{URL: *mustURL("wayfinder:///" + svc)}, &childCC{i: i, out: lw}, gresolver.BuildOptions{})
		if err != nil {
			return err
		}
		rs = append(rs, r)
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || f[0] != "stats" {
			return fmt.Errorf("unknown command %q", sc.Text())
		}
		var qb consul.QueryBackends
		if creg != nil {
			qb = creg.QueryBackends()
		}
		lw.printf("stats %s watches=%d streaming=%d blocking=%d unreported=%d updates=%d\n",
			f[1], cache.Stats().Watches, qb.Streaming, qb.BlockingQuery, qb.Unreported, lw.updates())
	}
	return sc.Err()
}

// lineWriter writes whole lines to a child's stdout, flushed each.
type lineWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
	n  int64 // "u" lines written
}

func (l *lineWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if strings.HasPrefix(format, "u ") {
		l.n++
	}
	fmt.Fprintf(l.w, format, args...)
	l.w.Flush()
}

func (l *lineWriter) updates() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// childCC is the fake ClientConn of one of a child's resolvers.
type childCC struct {
	i   int
	out *lineWriter
}

func (c *childCC) UpdateState(s gresolver.State) error {
	addrs := make([]string, 0, len(s.Endpoints))
	for _, e := range s.Endpoints {
		for _, a := range e.Addresses {
			addrs = append(addrs, a.Addr)
		}
	}
	slices.Sort(addrs)
	c.out.printf("u %d %s\n", c.i, strings.Join(addrs, ","))
	return nil
}

func (c *childCC) ReportError(error)              {}
func (c *childCC) NewAddress([]gresolver.Address) {}
func (c *childCC) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{}
}

// fleet is the scenario's child processes and what they reported. mu
// guards the fields below it; changed is closed and replaced whenever a
// child reports.
type fleet struct {
	children []*loadChild

	mu      sync.Mutex
	changed chan struct{}
	seq     int
}

type loadChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	read   chan struct{} // closed when stdout reached EOF
	stderr *tailBuffer

	// Guarded by the fleet's mu.
	sets     map[int]string // service index → last addresses
	stats    map[string]int64
	statsSeq int
}

// startFleet starts n children watching lc's services; tb's cleanup
// kills and waits for any still running.
func startFleet(tb testing.TB, n int, lc loadChildConfig) (*fleet, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	js, err := json.Marshal(lc)
	if err != nil {
		return nil, err
	}
	f := &fleet{changed: make(chan struct{})}
	tb.Cleanup(f.stop)
	for range n {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), childEnv+"="+string(js))
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		c := &loadChild{cmd: cmd, read: make(chan struct{}), stderr: &tailBuffer{max: 4096}, sets: map[int]string{}}
		cmd.Stderr = c.stderr
		if c.stdin, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("starting a child: %w", err)
		}
		f.children = append(f.children, c)
		go f.readChild(c, stdout) // owned: ends at the child's exit (stop)
	}
	return f, nil
}

// readChild records what c writes, until its stdout closes.
func (f *fleet) readChild(c *loadChild, r io.Reader) {
	defer func() {
		f.mu.Lock()
		close(c.read)
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
	}()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		f.mu.Lock()
		switch fs[0] {
		case "u":
			if i, err := strconv.Atoi(fs[1]); err == nil {
				c.sets[i] = strings.Join(fs[2:], "")
			}
		case "stats":
			if seq, err := strconv.Atoi(fs[1]); err == nil {
				st := map[string]int64{}
				for _, kv := range fs[2:] {
					k, v, _ := strings.Cut(kv, "=")
					n, _ := strconv.ParseInt(v, 10, 64)
					st[k] = n
				}
				c.stats, c.statsSeq = st, seq
			}
		}
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
	}
}

// waitFor waits until cond, called under mu, holds. It returns an error
// if d passes first, or a child exits.
func (f *fleet) waitFor(ctx context.Context, d time.Duration, cond func() bool) error {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		f.mu.Lock()
		ok, ch := cond(), f.changed
		var gone *loadChild
		for _, c := range f.children {
			select {
			case <-c.read:
				gone = c
			default:
			}
		}
		f.mu.Unlock()
		switch {
		case ok:
			return nil
		case gone != nil:
			return fmt.Errorf("a child exited; its stderr: %s", gone.stderr)
		}
		select {
		case <-ch:
		case <-wctx.Done():
			if err := ctx.Err(); err != nil {
				return err
			}
			return fmt.Errorf("not within %v", d)
		}
	}
}

// converged returns how many children show every service with exactly
// the instances of want, waiting up to d for all of them.
func (f *fleet) converged(ctx context.Context, d time.Duration, want [][]registry.Instance) (int, error) {
	exp := make([]string, len(want))
	for i, insts := range want {
		addrs := make([]string, len(insts))
		for j, in := range insts {
			addrs[j] = in.Address
		}
		slices.Sort(addrs)
		exp[i] = strings.Join(addrs, ",")
	}
	count := func() int {
		n := 0
		for _, c := range f.children {
			ok := true
			for i, e := range exp {
				if s, seen := c.sets[i]; !seen || s != e {
					ok = false
					break
				}
			}
			if ok {
				n++
			}
		}
		return n
	}
	if err := f.waitFor(ctx, d, func() bool { return count() == len(f.children) }); err != nil && !strings.HasPrefix(err.Error(), "not within") {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return count(), nil
}

// waitConverged is converged that fails unless every child converged.
func (f *fleet) waitConverged(ctx context.Context, d time.Duration, want [][]registry.Instance) error {
	n, err := f.converged(ctx, d, want)
	if err != nil {
		return err
	}
	if n != len(f.children) {
		return fmt.Errorf("%d of %d children show every service's set after %v; first child's stderr: %s", n, len(f.children), d, f.children[0].stderr)
	}
	return nil
}

// stats asks every child for its counts.
func (f *fleet) stats(ctx context.Context, d time.Duration) ([]map[string]int64, error) {
	f.mu.Lock()
	f.seq++
	seq := f.seq
	f.mu.Unlock()
	for _, c := range f.children {
		if _, err := fmt.Fprintf(c.stdin, "stats %d\n", seq); err != nil {
			return nil, fmt.Errorf("asking a child for its stats: %w; its stderr: %s", err, c.stderr)
		}
	}
	if err := f.waitFor(ctx, d, func() bool {
		for _, c := range f.children {
			if c.statsSeq != seq {
				return false
			}
		}
		return true
	}); err != nil {
		return nil, fmt.Errorf("children's stats: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]map[string]int64, len(f.children))
	for i, c := range f.children {
		out[i] = c.stats
	}
	return out, nil
}

// stop ends every child: it closes their stdin, which makes them close
// their watches and exit, kills those still running after 5 s, and waits
// for all. It is idempotent.
func (f *fleet) stop() {
	for _, c := range f.children {
		c.stdin.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range f.children {
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-c.read:
		case <-t.C:
			c.cmd.Process.Kill()
			<-c.read
		}
		t.Stop()
	}
	for _, c := range f.children {
		if c.cmd.ProcessState == nil {
			c.cmd.Wait()
		}
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// serverLoadVariants are the server-load configurations, in report order.
var serverLoadVariants = []struct{ variant, label string }{
	{"consul_streaming", "Consul, streaming"},
	{"consul_blocking_query", "Consul, blocking queries"},
	{"etcd", "etcd"},
}

// serverLoadWindows are the measurement windows, in report order.
var serverLoadWindows = []struct{ name, label string }{
	{"floor", "floor (no clients)"},
	{"idle", "idle"},
	{"change", "under change"},
}

// serverLoadCharts adds the server-load charts to charts.
func (r *Report) serverLoadCharts(charts map[string]string) {
	if len(r.variants("server_load", "-")) == 0 {
		return
	}
	for _, c := range []struct {
		file, title, unit, metric string
		log                       bool
		text                      func(float64) string
	}{
		{"server_load_bytes.svg", "Bytes the registry server sends", "KiB per minute, median of runs", "kib_sent_per_min", true,
			func(x float64) string { return fmtNum(x) + " KiB/min" }},
		{"server_load_cpu.svg", "CPU of the registry server", "per cent of one core, median of runs", "cpu_pct", false,
			func(x float64) string { return fmtNum(x) + " %" }},
	} {
		var g []barGroup
		for _, win := range serverLoadWindows {
			var bars []bar
			for _, v := range serverLoadVariants {
				if x, ok := r.get("server_load", "-", v.variant, win.name+"_"+c.metric); ok {
					bars = append(bars, bar{Label: v.label, Value: x, Text: c.text(x)})
				}
			}
			if len(bars) > 0 {
				g = append(g, barGroup{Label: win.label, Bars: bars})
			}
		}
		title := fmt.Sprintf("%s: %d client processes × %d services", c.title, r.Config.LoadClients, r.Config.LoadServices)
		charts[c.file] = barChart(title, c.unit, c.log, 0, g)
	}
}

// serverLoadSection renders the server-load section.
func (r *Report) serverLoadSection(w func(string, ...any), img func(name, alt string)) {
	rs := r.variants("server_load", "-")
	if len(rs) == 0 {
		return
	}
	c := r.Config
	w("## 10. Load on the registry servers\n\n")
	w("What clients cost the registry's **servers**. %d client processes (the harness's own binary, re-executed) each watch the same %d services, %d instances each, through one `resolver.Cache` with Wayfinder's defaults: one upstream watch per service per process, resolvers on a fake ClientConn, nothing dialled. A registrant in the harness's process registers the instances; then three windows are measured: *floor*, %v with the registrations and no client process (the server's own background: raft, serf, autopilot; and, on etcd, the registrant's lease keepalive stream); *idle*, %v with every client watching and nothing changing, from %v after every client process showed every service's set (so that the watches set up after the first read, etcd's watch creation and the agent's streaming subscriptions, are not in it); *under change*, %v during which the registrant adds or removes a %s instance of one service after another, one change every %v. After it every client process must show every service's final set.\n\n",
		c.LoadClients, c.LoadServices, loadBase, c.LoadIdle, c.LoadIdle, loadSettle, c.LoadChange, ordinal(loadBase+1), time.Duration(float64(time.Second)/c.LoadRate))
	w("- **Consul, streaming** and **Consul, blocking queries**: a Consul server (a server-mode agent with a data dir, not `-dev`) and one client agent joined to it over serf LAN, both started for the configuration; the client processes and the registrant talk to the client agent's HTTP API, as applications on a node do. The client agent runs with `use_streaming_backend = true` (Consul's default since 1.10) or `= false`; its `limits.http_max_conns_per_client` is raised from 200 to %d because every client process connects from 127.0.0.1, and its `ae_interval` from 1 min to 1 h, so that its periodic anti-entropy sync, for which the server sends every service and check of the node (about 100 KB for 20 of Wayfinder's instances), a cost of the registrations, not of the watchers, does not land in some windows and not others (the sync on each change is untouched); everything else is Consul's default (the server's `rpc.enable_streaming` is on by default). With streaming the client agent subscribes to the server once per service and answers all %d processes' blocking queries from its view; without, each blocking query is a blocking RPC the agent forwards to the server, and each change wakes one per process. Each client process's Registry also asks `/v1/status/leader` after 5 s without an answer while its queries block (the liveness bound, `WithUnavailableAfter`), which the client agent forwards to the server: about %s RPCs per second in every Consul configuration. The TTL heartbeats go to the client agent, which sends the server a check's changes of status at once and of output (Wayfinder's is constant) at most every 5 min.\n",
		4*c.LoadClients*c.LoadServices+256, c.LoadClients, fmtNum(float64(c.LoadClients)/5))
	w("- **etcd**: one member; the client processes and the registrant connect to it directly (etcd has no agent). Each client process's watches share its one client connection, on which, at rest, its Registry reads one key (count only) after 5 s without hearing from etcd (the liveness bound) and gRPC pings every 10 s.\n")
	w("- **Measured**: the server process only (the Consul server, not the client agent; the etcd member). CPU is utime + stime from `/proc/<pid>/stat` (10 ms ticks) at the window's start and end. Bytes sent are the `bytes_sent` of every established TCP socket of the process (`ss -tinpH state established`, matched by pid) at the window's start and end: a socket opened during the window counts from 0; the bytes of one closed during it are lost, and the table counts such sockets (0 means none was lost); one opened and closed between the two samples is not seen at all (serf's TCP push-pull with the client agent, every 30 s). The process's connections to itself (a server-mode Consul agent's own RPCs to its server part) are left out. UDP (serf's gossip probes) is not counted. Every figure is scaled to one minute. Only the server is measured: the Consul client agent's CPU and the clients' own are not in these figures.\n\n")
	img("server_load_bytes.svg", "server bytes sent chart")
	img("server_load_cpu.svg", "server CPU chart")
	w("| configuration | window | server CPU, s per minute (%% of one core) | server sent, KiB per minute | sockets closed |\n|---|---|---|---|---|\n")
	for _, v := range serverLoadVariants {
		res, ok := r.Find("server_load", "-", v.variant)
		if !ok {
			continue
		}
		mm := res.Metrics
		for _, win := range serverLoadWindows {
			w("| %s | %s | %s (%s %%) | %s | %s |\n", v.label, win.label, fmtNum(mm[win.name+"_cpu_s_per_min"]), fmtNum(mm[win.name+"_cpu_pct"]), fmtNum(mm[win.name+"_kib_sent_per_min"]), fmtNum(mm[win.name+"_sockets_closed"]))
		}
	}
	w("\n")
	ratio := func(a, b, metric string) (float64, bool) {
		x, ok1 := r.get("server_load", "-", a, metric)
		y, ok2 := r.get("server_load", "-", b, metric)
		if !ok1 || !ok2 || y == 0 {
			return 0, false
		}
		return x / y, true
	}
	var lines []string
	for _, win := range []string{"change", "idle"} {
		if x, ok := ratio("consul_blocking_query", "consul_streaming", win+"_kib_sent_per_min"); ok {
			y, _ := ratio("consul_blocking_query", "consul_streaming", win+"_cpu_s_per_min")
			lines = append(lines, fmt.Sprintf("%s, Consul without streaming ÷ with: %s× the bytes, %s× the CPU", win, fmtNum(x), fmtNum(y)))
		}
		if x, ok := ratio("consul_streaming", "etcd", win+"_kib_sent_per_min"); ok {
			y, _ := ratio("consul_streaming", "etcd", win+"_cpu_s_per_min")
			lines = append(lines, fmt.Sprintf("%s, Consul with streaming ÷ etcd: %s× the bytes, %s× the CPU", win, fmtNum(x), fmtNum(y)))
		}
	}
	if len(lines) > 0 {
		w("Ratios from the same runs: %s.\n\n", strings.Join(lines, "; "))
	}
	w("| configuration | server sent per change, above idle | changes | client processes converged | upstream watches per process (fewest) | blocking queries answered by streaming / by blocking RPCs | states pushed to the resolvers |\n|---|---|---|---|---|---|---|\n")
	for _, v := range serverLoadVariants {
		if res, ok := r.Find("server_load", "-", v.variant); ok {
			mm := res.Metrics
			q := "—"
			if v.variant != "etcd" {
				q = fmt.Sprintf("%s / %s", fmtNum(mm["streaming_queries"]), fmtNum(mm["blocking_queries"]))
			}
			per := "—"
			if n, win := mm["changes"], mm["change_window_s"]; n > 0 && win > 0 {
				per = fmtNum((mm["change_kib_sent_per_min"]-mm["idle_kib_sent_per_min"])/(n/win*60)) + " KiB"
			}
			w("| %s | %s | %s | %s of %s | %s | %s | %s |\n", v.label, per, fmtNum(mm["changes"]), fmtNum(mm["converged_children"]), fmtNum(mm["clients"]), fmtNum(mm["min_watches_per_child"]), q, fmtNum(mm["updates_seen"]))
		}
	}
	w("\n")
	w("Consul's own figure, for comparison: [hashicorp/consul#6366](https://github.com/hashicorp/consul/issues/6366) reported server CPU going from 60 %% to under 1 %% with streaming, on a large workload; this is a small one (%d × %d watches through one client agent, on a shared 2-core machine), whose CPU figures are within the machine's noise of the floor (compare the floors of the configurations, which differ only in the client agent's setting), while the bytes show the difference plainly. Which Consul queries streaming serves, and what Wayfinder sends, is in [consul.md](consul.md#streaming). The per-ClientConn alternatives (the blocking-query resolver of section 2, etcd's naming resolver) are not measured here.\n\n",
		c.LoadClients, c.LoadServices)
}

// ordinal spells small ordinals.
func ordinal(n int) string {
	switch n {
	case 1:
		return "first"
	case 2:
		return "second"
	case 3:
		return "third"
	case 4:
		return "fourth"
	}
	return fmt.Sprintf("%dth", n)
}
