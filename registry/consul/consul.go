package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-cleanhttp"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// Metadata keys Wayfinder stores its own fields under. Consul reserves
// the "consul-" prefix and registry.Instance.Validate reserves
// "wayfinder", so user metadata never collides with them.
const (
	metaID      = "wayfinder_id"
	metaVersion = "wayfinder_version"
	metaZone    = "wayfinder_zone"
	metaWeight  = "wayfinder_weight"
	// metaRegistered holds Instance.Registered in RFC 3339 with
	// nanoseconds, UTC. It is written once per change of the instance,
	// so re-registering an unchanged instance rewrites the same value.
	metaRegistered = "wayfinder_registered"
)

// Registry is a Consul client in both roles. Registrations go to the
// agent it talks to; reads go through that agent to the servers.
//
// Lock order: Registry.mu before registration.mu and watcher.mu. mu
// guards regs and closed.
type Registry struct {
	client *api.Client
	cfg    config
	log    *slog.Logger
	// name is the agent as errors name it, "consul://host:port"; "" for
	// a client from NewFromClient (see agentName).
	name string
	// reqSlack is added to wait + wait/16 to get a blocking request's
	// deadline: the server adds up to wait/16 of jitter, and the answer
	// still has to cross the network.
	reqSlack time.Duration
	// ownHTTP is the HTTP client New made, whose idle connections Close
	// releases; nil for clients the caller owns.
	ownHTTP []*http.Client
	// agent is the client for registration calls: client itself, or one
	// with a connection cap (see New).
	agent *api.Client

	probe *prober   // wakes failing watches when the agent returns
	live  *liveness // the bound of WithUnavailableAfter on watch queries

	counters          counters
	unregisterMetrics func()
	problems          *driver.FieldReporter

	mu     sync.Mutex
	regs   map[string]*registration // by Instance.Key
	closed bool

	watchers driver.Watchers
}

var (
	_ registry.Registry             = (*Registry)(nil)
	_ registry.ServiceLister        = (*Registry)(nil)
	_ registry.HealthRegistrar      = (*Registry)(nil)
	_ registry.StatusReporter       = (*Registry)(nil)
	_ registry.FieldProblemReporter = (*Registry)(nil)
	_ driver.LoggerOpener           = (*URLOpener)(nil)
)

// New returns a client of the agent at addr ("host:port", or
// "https://host:port"). An empty addr means CONSUL_HTTP_ADDR, or
// 127.0.0.1:8500. The ACL token and TLS files come from options, else
// from Consul's environment variables (CONSUL_HTTP_TOKEN,
// CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT, CONSUL_CLIENT_CERT,
// CONSUL_CLIENT_KEY, CONSUL_HTTP_SSL). New does not touch the network.
func New(addr string, opts ...Option) (*Registry, error) {
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ac := api.DefaultConfig() // reads the environment
	if addr != "" {
		ac.Address = addr
	}
	if cfg.https {
		ac.Scheme = "https"
	}
	if cfg.tls != nil {
		t := *cfg.tls
		if t.CAFile == "" && t.CAPath == "" && len(t.CAPem) == 0 {
			t.CAFile, t.CAPath = ac.TLSConfig.CAFile, ac.TLSConfig.CAPath
		}
		ac.TLSConfig = t
	}
	if cfg.token != "" {
		ac.Token, ac.TokenFile = cfg.token, ""
	}
	if cfg.tokenFile != "" {
		ac.TokenFile = cfg.tokenFile
	}
	name := agentURL(ac.Address)
	agentAC := *ac
	if cfg.httpClient != nil {
		// A copy whose transport checks that answers are Consul's; the
		// caller's client is left as it is.
		hc := checked(cfg.httpClient)
		ac.HttpClient = hc
		agentAC.HttpClient = hc
	} else {
		// Registration traffic gets its own transport with a cap on
		// connections: heartbeats of many instances must never exhaust
		// the agent's per-client connection limit (200 by default),
		// while blocking queries, which hold a connection each for
		// minutes, must never queue behind a cap.
		// A fresh transport, not a Clone: cloning sets up HTTP/2 and
		// with it a TLS config, which api.NewClient would then not fill
		// with the CA and client certificate.
		tr := cleanhttp.DefaultPooledTransport()
		tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost = 16, 16
		agentAC.Transport = tr
	}
	client, err := api.NewClient(ac)
	if err != nil {
		// api's errors name files, never the token itself.
		return nil, fmt.Errorf("consul: %w", err)
	}
	agentClient, err := api.NewClient(&agentAC)
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	// api.NewClient made these clients (or, for a unix socket, replaced
	// the caller's copy); they share the pointers with the api.Clients.
	for _, hc := range []*http.Client{ac.HttpClient, agentAC.HttpClient} {
		if _, ok := hc.Transport.(driver.AnswerCheck); !ok {
			*hc = *checked(hc)
		}
	}
	r := newRegistry(client, cfg, ac.HttpClient)
	r.name = name
	r.agent = agentClient
	if cfg.httpClient == nil {
		r.ownHTTP = []*http.Client{ac.HttpClient, agentAC.HttpClient}
	}
	return r, nil
}

// NewFromClient returns a Registry over an existing Consul API client,
// whose address, token and TLS settings are used as they are.
func NewFromClient(c *api.Client, opts ...Option) (*Registry, error) {
	if c == nil {
		return nil, errors.New("consul: nil client")
	}
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return newRegistry(c, cfg, cfg.httpClient), nil
}

func newRegistry(c *api.Client, cfg config, hc *http.Client) *Registry {
	r := &Registry{
		client:   c,
		agent:    c,
		cfg:      cfg,
		log:      cfg.logger,
		reqSlack: 10 * time.Second,
		regs:     map[string]*registration{},
		probe:    newProber(),
		problems: driver.NewFieldReporter("consul", cfg.logger),
		live:     newLiveness(cfg.liveness),
	}
	r.unregisterMetrics = r.registerMetrics(cfg.meter)
	// A client-wide timeout shorter than a blocking request would cut
	// every long poll (kratos#2813): shorten the wait to fit instead.
	if hc != nil && hc.Timeout > 0 {
		if need := r.requestTimeout(cfg.wait); hc.Timeout < need {
			w := (hc.Timeout - r.reqSlack/2) * 16 / 17
			if w < time.Second {
				w = time.Second
			}
			r.reqSlack = r.reqSlack / 2
			r.log.Warn("consul: HTTP client timeout shorter than the blocking wait; shortening the wait",
				"timeout", hc.Timeout, "wait", cfg.wait, "new_wait", w)
			r.cfg.wait = w
		}
	}
	return r
}

// requestTimeout is the deadline of a blocking request with this wait.
func (r *Registry) requestTimeout(wait time.Duration) time.Duration {
	return wait + wait/16 + r.reqSlack
}

// Client returns the underlying Consul API client.
func (r *Registry) Client() *api.Client { return r.client }

// Close stops every heartbeat and watcher started by r. It does not
// deregister: instances whose heartbeat stops turn critical after their
// TTL and are removed by Consul after DeregisterCriticalServiceAfter.
// Close is idempotent.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	regs := r.regs
	r.regs = map[string]*registration{}
	r.mu.Unlock()
	for _, g := range regs {
		g.stop()
	}
	r.watchers.CloseAll()
	r.probe.close()
	r.live.close()
	r.unregisterMetrics()
	for _, hc := range r.ownHTTP {
		hc.CloseIdleConnections()
	}
	return nil
}

func (r *Registry) errClosed() error { return fmt.Errorf("consul: %w", registry.ErrClosed) }

// Lookup implements registry.Discovery with one non-blocking read per
// datacenter, in the configured consistency mode.
func (r *Registry) Lookup(ctx context.Context, service string) ([]registry.Instance, error) {
	if err := registry.ValidateService(service); err != nil {
		return nil, err
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, r.errClosed()
	}
	ctx, cancel, bound := r.bounded(ctx)
	defer cancel()
	var all []registry.Instance
	for _, dc := range r.datacenters() {
		insts, _, err := r.query(ctx, service, dc, 0)
		if err != nil {
			return nil, r.unavailable(fmt.Sprintf("lookup %q%s", service, dcSuffix(dc)), bound, err)
		}
		all = append(all, insts...)
	}
	// One instance per ID: the first configured datacenter's wins.
	return driver.Normalize(all), nil
}

// Services implements registry.ServiceLister: the services with at least
// one registered instance (healthy or not) in the configured
// datacenters, sorted, without Consul's own "consul" service.
func (r *Registry) Services(ctx context.Context) ([]string, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, r.errClosed()
	}
	ctx, cancel, bound := r.bounded(ctx)
	defer cancel()
	set := map[string]bool{}
	for _, dc := range r.datacenters() {
		q := &api.QueryOptions{Datacenter: dc, AllowStale: r.cfg.consistency == ConsistencyStale, RequireConsistent: r.cfg.consistency == ConsistencyConsistent}
		m, _, err := r.client.Catalog().Services(q.WithContext(ctx))
		if err != nil {
			return nil, r.unavailable("list services"+dcSuffix(dc), bound, err)
		}
		for name := range m {
			if name != "consul" {
				set[name] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set)), nil
}

func (r *Registry) datacenters() []string {
	if len(r.cfg.dcs) == 0 {
		return []string{""}
	}
	return r.cfg.dcs
}

func dcSuffix(dc string) string {
	if dc == "" {
		return ""
	}
	return " in dc " + strconv.Quote(dc)
}

// query reads the healthy instances of service in dc. index 0 is a plain
// read; otherwise it blocks until Consul's index passes index or the wait
// ends. It returns the new X-Consul-Index.
func (r *Registry) query(ctx context.Context, service, dc string, index uint64) ([]registry.Instance, uint64, error) {
	insts, next, _, err := r.queryMode(ctx, service, dc, index, false)
	return insts, next, err
}

// queryMode is query, made in Consistent mode (from the leader, past the
// agent cache) if consistent is set. It also returns the agent's
// X-Consul-Query-Backend, "" if the answer had none.
//
// An agent with use_streaming_backend (Consul's default since 1.10; its
// servers need rpc.enable_streaming, their default) answers the query
// from its streaming backend if it blocks (index > 0) or uses the agent
// cache, and has no near: the consistency mode is then not applied (the
// agent's view follows one server's state), so a confirming read is
// always made with index 0 and without the cache.
func (r *Registry) queryMode(ctx context.Context, service, dc string, index uint64, consistent bool) ([]registry.Instance, uint64, string, error) {
	q := &api.QueryOptions{
		Datacenter:        dc,
		AllowStale:        r.cfg.consistency == ConsistencyStale && !consistent,
		RequireConsistent: r.cfg.consistency == ConsistencyConsistent || consistent,
		UseCache:          r.cfg.cached && !consistent,
		Near:              r.cfg.near,
	}
	var cancel context.CancelFunc
	if index > 0 {
		q.WaitIndex, q.WaitTime = index, r.cfg.wait
		ctx, cancel = context.WithTimeout(ctx, r.requestTimeout(r.cfg.wait))
	} else {
		ctx, cancel, _ = r.bounded(ctx)
	}
	defer cancel()
	entries, meta, err := r.client.Health().ServiceMultipleTags(service, r.cfg.tags, !r.cfg.includeWarning, q.WithContext(ctx))
	if err != nil {
		return nil, 0, "", err
	}
	if meta == nil {
		return nil, 0, "", fmt.Errorf("%w: no query metadata in answer", errProtocol)
	}
	if meta.LastIndex == 0 {
		// Consul answers a health query with an index of at least 1. An
		// answer without one cannot be followed: blocking on it returns
		// at once, forever.
		return nil, 0, "", fmt.Errorf("%w: answer without a usable X-Consul-Index (missing or 0)", errProtocol)
	}
	out := make([]registry.Instance, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil {
			return nil, 0, "", fmt.Errorf("%w: malformed health entry in answer", errProtocol)
		}
		if r.cfg.includeWarning {
			if st := e.Checks.AggregatedStatus(); st != api.HealthPassing && st != api.HealthWarning {
				continue
			}
		}
		inst, problems, err := decode(service, e)
		if err != nil {
			r.log.Debug("consul: skipping an entry that is not a valid instance", "service", service, "consul_id", e.Service.ID, "err", err)
			continue
		}
		r.problems.Observe(service, inst.ID, problems)
		out = append(out, inst)
	}
	sortInstances(out)
	return out, meta.LastIndex, meta.QueryBackend, nil
}

// sortInstances sorts by ID, then by address, so that of an ID two nodes
// of one datacenter share (a misconfigured pair) the lower address is
// the one driver.Normalize keeps, deterministically.
func sortInstances(in []registry.Instance) {
	slices.SortFunc(in, func(a, b registry.Instance) int {
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return strings.Compare(a.Address, b.Address)
	})
}

// serviceID is the Consul service ID of inst. Consul IDs are unique per
// agent across services, registry IDs only within a service; service
// names cannot contain ':', so the pair maps to a unique ID.
func serviceID(inst registry.Instance) string { return inst.Service + ":" + inst.ID }

// encode builds the agent registration for inst.
func encode(inst registry.Instance) (*api.AgentServiceRegistration, error) {
	host, portStr, err := net.SplitHostPort(inst.Address)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, err
	}
	meta := make(map[string]string, len(inst.Metadata)+5)
	for k, v := range inst.Metadata {
		meta[k] = v
	}
	meta[metaID] = inst.ID
	if inst.Version != "" {
		meta[metaVersion] = inst.Version
	}
	if inst.Zone != "" {
		meta[metaZone] = inst.Zone
	}
	if inst.Weight != 0 {
		meta[metaWeight] = strconv.Itoa(inst.Weight)
	}
	if !inst.Registered.IsZero() {
		meta[metaRegistered] = inst.Registered.UTC().Format(time.RFC3339Nano)
	}
	return &api.AgentServiceRegistration{
		ID:      serviceID(inst),
		Name:    inst.Service,
		Tags:    slices.Clone(inst.Tags),
		Address: host,
		Port:    port,
		Meta:    meta,
		// Consul's DNS interface weighs by these; Wayfinder reads Meta.
		Weights: &api.AgentWeights{Passing: inst.EffectiveWeight(), Warning: 1},
	}, nil
}

// decode turns a health entry into an instance. Entries registered by
// other tools work too: their Consul ID is the instance ID, and their
// Weights.Passing the weight. A Wayfinder field that is malformed or
// invalid (a foreign Meta.wayfinder_weight = "heavy") is dropped and
// returned as a problem: the instance is kept with that field's default.
// Only an entry that yields no valid ID or address is an error.
func decode(service string, e *api.ServiceEntry) (registry.Instance, []registry.FieldProblem, error) {
	s := e.Service
	inst := registry.Instance{ID: s.ID, Service: service}
	host := s.Address
	if host == "" && e.Node != nil {
		host = e.Node.Address
	}
	inst.Address = net.JoinHostPort(host, strconv.Itoa(s.Port))
	if len(s.Tags) > 0 {
		inst.Tags = slices.Clone(s.Tags)
	}
	var problems []registry.FieldProblem
	bad := func(field, value, reason string) {
		problems = append(problems, registry.FieldProblem{Service: service, Field: field, Value: driver.CutValue(value), Reason: reason})
	}
	weightFrom := "Meta." + metaWeight
	for k, v := range s.Meta {
		switch k {
		case metaID:
			if err := (registry.Instance{ID: v, Service: service, Address: inst.Address}).Validate(); err != nil {
				bad("Meta."+metaID, v, "not a valid ID; the Consul service ID is used")
				continue
			}
			inst.ID = v
		case metaVersion:
			inst.Version = v
		case metaZone:
			inst.Zone = v
		case metaWeight:
			w, err := strconv.Atoi(v)
			if err != nil || w < 0 || w > registry.MaxWeight {
				bad("Meta."+metaWeight, v, fmt.Sprintf("not an integer in 0..%d; Weights.Passing is used", int(registry.MaxWeight)))
				continue
			}
			inst.Weight = w
		case metaRegistered:
			// Only a metric reads the stamp: a malformed one is dropped,
			// never the instance.
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				bad("Meta."+metaRegistered, v, "not an RFC 3339 time")
				continue
			}
			inst.Registered = t
		default:
			lk := strings.ToLower(k)
			if strings.HasPrefix(lk, registry.ReservedMetaPrefix) || strings.HasPrefix(lk, "consul-") {
				continue // other tools' or future Wayfinder keys
			}
			if inst.Metadata == nil {
				inst.Metadata = map[string]string{}
			}
			inst.Metadata[k] = v
		}
	}
	if _, ok := s.Meta[metaWeight]; !ok || inst.Weight == 0 {
		// Consul's native weight, as Kitex and others register it. Consul
		// stores 1 when a registration gives none, which is the default
		// weight: 0 keeps instances Wayfinder wrote equal to what was
		// registered.
		if p := s.Weights.Passing; p != registry.DefaultWeight && p != 0 {
			inst.Weight, weightFrom = p, "Weights.Passing"
		}
	}
	inst, more, err := driver.Sanitize(inst, func(f string) string {
		switch {
		case f == "Version":
			return "Meta." + metaVersion
		case f == "Zone":
			return "Meta." + metaZone
		case f == "Weight":
			return weightFrom
		case strings.HasPrefix(f, "Metadata."):
			return "Meta." + strings.TrimPrefix(f, "Metadata.")
		}
		return f // Tags, Metadata
	})
	if err != nil {
		return registry.Instance{}, nil, err
	}
	problems = append(problems, more...)
	for i := range problems {
		problems[i].ID = inst.ID
	}
	return inst, problems, nil
}

// FieldProblems implements registry.FieldProblemReporter.
func (r *Registry) FieldProblems(service string) []registry.FieldProblem {
	return r.problems.FieldProblems(service)
}

// FieldProblemCount is the number of Wayfinder fields dropped from kept
// instances, counted once per instance, field and value.
func (r *Registry) FieldProblemCount() uint64 { return r.problems.Count() }
