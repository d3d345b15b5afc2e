package consul

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/hashicorp/consul/api"
	"go.opentelemetry.io/otel/metric"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Defaults.
const (
	DefaultWait              = 5 * time.Minute  // blocking-query wait, Consul's own default
	MaxWait                  = 10 * time.Minute // Consul caps wait here
	DefaultTTL               = 15 * time.Second // TTL check when no check is chosen
	DefaultDeregisterAfter   = time.Minute      // Consul's minimum
	DefaultRate              = 10.0             // blocking queries per second per watch after an answer that changed nothing, sustained (WithRateLimit)
	DefaultGRPCCheckInterval = 5 * time.Second
	// DefaultResync is how often a registration without a TTL check asks
	// the agent whether it still knows the service.
	DefaultResync = 10 * time.Second
	// DefaultUnavailableAfter is how long a watch may go without an
	// answer from the agent before Next reports ErrUnavailable
	// (WithUnavailableAfter).
	DefaultUnavailableAfter = 10 * time.Second
	// DefaultTimeout bounds every call that talks to the agent and has
	// no deadline of its own (WithTimeout): Register and its variants,
	// Deregister, Lookup and Services, and each request of a
	// registration's loop and of a watch other than a blocking query.
	DefaultTimeout = 5 * time.Second
)

// Consistency selects the consistency mode of reads.
type Consistency int

const (
	// ConsistencyDefault lets the leader answer without a quorum round trip.
	ConsistencyDefault Consistency = iota
	// ConsistencyStale lets any server answer: lower latency and load, possibly
	// slightly old data, and reads keep working without a leader.
	ConsistencyStale
	// ConsistencyConsistent makes the leader confirm leadership on every read.
	// An agent with use_streaming_backend (Consul's default) ignores the
	// mode for blocking queries: it answers them from its streaming
	// view, which follows one server's state (and still says
	// X-Consul-Effective-Consistency: consistent). A watch's first read,
	// and its reads after an error or an index that went backwards, are
	// never streamed, so they stay consistent.
	ConsistencyConsistent
)

func (c Consistency) String() string {
	switch c {
	case ConsistencyStale:
		return "stale"
	case ConsistencyConsistent:
		return "consistent"
	}
	return "default"
}

// Option configures a Registry.
type Option func(*config)

type config struct {
	// Client.
	token, tokenFile string
	tls              *api.TLSConfig
	https            bool
	httpClient       *http.Client

	// Discovery.
	dcs            []string
	tags           []string
	includeWarning bool
	consistency    Consistency
	cached         bool
	near           string
	wait           time.Duration
	rate           float64
	backoffBase    time.Duration
	backoffMax     time.Duration
	liveness       time.Duration
	timeout        time.Duration

	// Registration.
	ttl             time.Duration
	grpcInterval    time.Duration
	grpcTimeout     time.Duration
	grpcService     string
	grpcTLS         bool
	noServerGRPC    bool
	health          registry.HealthFunc
	deregisterAfter time.Duration
	resync          time.Duration

	logger *slog.Logger
	meter  metric.MeterProvider
}

func defaults() config {
	return config{
		wait:            DefaultWait,
		rate:            DefaultRate,
		backoffBase:     100 * time.Millisecond,
		backoffMax:      15 * time.Second,
		deregisterAfter: DefaultDeregisterAfter,
		resync:          DefaultResync,
		liveness:        DefaultUnavailableAfter,
		timeout:         DefaultTimeout,
		logger:          slog.New(slog.DiscardHandler),
	}
}

func (c *config) validate() error {
	switch {
	case c.wait <= 0 || c.wait > MaxWait:
		return fmt.Errorf("consul: wait %v is out of range (0, %v]", c.wait, MaxWait)
	case c.rate <= 0:
		return fmt.Errorf("consul: rate limit %v must be positive", c.rate)
	case c.consistency < ConsistencyDefault || c.consistency > ConsistencyConsistent:
		return fmt.Errorf("consul: unknown consistency %d", c.consistency)
	case c.cached && c.consistency == ConsistencyConsistent:
		return fmt.Errorf("consul: the agent cache cannot serve consistent reads")
	case c.ttl < 0 || (c.ttl > 0 && c.ttl < time.Second):
		return fmt.Errorf("consul: TTL %v is below 1s", c.ttl)
	case c.grpcInterval < 0 || (c.grpcInterval > 0 && c.grpcInterval < 100*time.Millisecond):
		return fmt.Errorf("consul: gRPC check interval %v is below 100ms", c.grpcInterval)
	case c.deregisterAfter < time.Minute:
		return fmt.Errorf("consul: DeregisterCriticalServiceAfter %v is below Consul's 1m minimum", c.deregisterAfter)
	case c.backoffBase <= 0 || c.backoffMax < c.backoffBase:
		return fmt.Errorf("consul: backoff %v..%v is invalid", c.backoffBase, c.backoffMax)
	case c.resync <= 0:
		return fmt.Errorf("consul: resync interval %v must be positive", c.resync)
	case c.liveness < 100*time.Millisecond:
		return fmt.Errorf("consul: unavailable-after bound %v is below 100ms", c.liveness)
	case c.timeout <= 0:
		return fmt.Errorf("consul: timeout %v must be positive", c.timeout)
	}
	for _, dc := range c.dcs {
		if dc == "" {
			return fmt.Errorf("consul: empty datacenter name")
		}
	}
	for _, tag := range c.tags {
		if tag == "" {
			return fmt.Errorf("consul: empty tag filter")
		}
	}
	if c.ttl == 0 && c.grpcInterval == 0 {
		c.ttl = DefaultTTL
	}
	if c.grpcInterval > 0 && c.grpcTimeout <= 0 {
		c.grpcTimeout = min(c.grpcInterval, 10*time.Second)
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// WithToken sets the ACL token, overriding CONSUL_HTTP_TOKEN(_FILE). The
// token is sent in the X-Consul-Token header, never logged.
func WithToken(token string) Option { return func(c *config) { c.token = token } }

// WithTokenFile reads the ACL token from path, overriding
// CONSUL_HTTP_TOKEN(_FILE) and WithToken.
func WithTokenFile(path string) Option { return func(c *config) { c.tokenFile = path } }

// WithTLS talks to the agent over HTTPS with the given CA and client
// certificate files, overriding CONSUL_CACERT, CONSUL_CLIENT_CERT and
// CONSUL_CLIENT_KEY.
func WithTLS(t api.TLSConfig) Option { return func(c *config) { c.tls, c.https = &t, true } }

// WithHTTPClient uses hc for every request. Its Timeout, if set, must
// exceed the blocking wait; New shortens the wait to fit otherwise.
func WithHTTPClient(hc *http.Client) Option { return func(c *config) { c.httpClient = hc } }

// WithDatacenters reads from the given datacenters (the agent's own if
// none). With more than one, a watch runs one blocking query per
// datacenter, each with its own index and failures, and merges them.
func WithDatacenters(dcs ...string) Option {
	return func(c *config) { c.dcs = append([]string(nil), dcs...) }
}

// WithTagFilter makes reads keep only the instances carrying all of tags
// (URL parameter tag). It filters what Lookup and Watch return; the tags
// an instance carries are its own (registry.Instance.Tags).
func WithTagFilter(tags ...string) Option {
	return func(c *config) { c.tags = append([]string(nil), tags...) }
}

// WithWarning includes instances whose checks are in the warning state.
// By default only passing instances are returned.
func WithWarning() Option { return func(c *config) { c.includeWarning = true } }

// WithConsistency sets the consistency mode of reads.
func WithConsistency(m Consistency) Option { return func(c *config) { c.consistency = m } }

// WithAgentCache serves reads from the local agent's cache (?cached=true),
// which shares one upstream query among all the agent's clients. With
// use_streaming_backend (Consul's default) every cached read, the first
// one included, comes from the agent's streaming view instead.
func WithAgentCache() Option { return func(c *config) { c.cached = true } }

// WithNear sorts results by round-trip time from node ("_agent" for the
// local agent). Wayfinder sorts by ID afterwards, so this matters only to
// which instances a Consul-side limit would keep.
//
// WithNear turns off Consul's streaming backend for every watch of the
// Registry: an agent answers a query with near by a blocking RPC to a
// server, one per watch and change, even with use_streaming_backend
// (QueryBackends counts them as BlockingQuery).
func WithNear(node string) Option { return func(c *config) { c.near = node } }

// WithWait sets the blocking-query wait (DefaultWait; at most MaxWait).
// An idle watch makes about one request per wait.
func WithWait(d time.Duration) Option { return func(c *config) { c.wait = d } }

// WithRateLimit caps a watch's blocking queries that follow an answer
// which changed nothing (Consul's index moved for another reason) at
// perSecond sustained, with a burst of 2, so that a query that keeps
// returning at once cannot spin. Queries that follow a change of the
// watched set are capped at 5 × perSecond with a burst of 10: a watch
// following real changes answers at once, and a storm of changes still
// costs a bounded number of queries.
func WithRateLimit(perSecond float64) Option { return func(c *config) { c.rate = perSecond } }

// WithUnavailableAfter bounds how long a watch may go without an answer
// from the agent (DefaultUnavailableAfter). A blocking query is silent
// by design for up to its wait, so while one is in flight the Registry
// asks the agent for its leader (/v1/status/leader) after d/2 without an
// answer, one request shared by every watch of the Registry. Past d
// without an answer, the watch abandons its blocking query, Next returns
// an error wrapping registry.ErrUnavailable, and the watch retries with
// backoff, waking as soon as the agent answers, and re-sends the set.
// Without the bound a frozen agent, whose kernel still accepts
// connections, would hold a blocking query until its HTTP timeout (over
// 5 minutes with the default wait). d must be at least 100ms.
func WithUnavailableAfter(d time.Duration) Option { return func(c *config) { c.liveness = d } }

// WithTimeout bounds every call that talks to the agent and whose
// context has no deadline (DefaultTimeout): Register,
// RegisterWithHealth, RegisterWithAddressCheck, Deregister, Lookup and
// Services return within d with an error wrapping
// registry.ErrUnavailable when the agent does not answer. A context with
// a deadline is its own bound, longer or shorter. The same d bounds each
// request of a registration's loop (registration, heartbeat) and each
// read of a watch that is not a blocking query; blocking queries are
// bounded by the wait and WithUnavailableAfter instead. d must be
// positive.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithBackoff sets the jittered exponential backoff after errors.
func WithBackoff(base, max time.Duration) Option {
	return func(c *config) { c.backoffBase, c.backoffMax = base, max }
}

// WithTTLCheck registers a TTL check, refreshed every ttl/3 with the
// result of the HealthFunc (see WithHealth). With neither WithTTLCheck
// nor WithGRPCCheck, a TTL check of DefaultTTL is used.
func WithTTLCheck(ttl time.Duration) Option { return func(c *config) { c.ttl = ttl } }

// WithGRPCCheck registers a native Consul gRPC check: the agent calls
// grpc.health.v1.Health/Check on the instance's address every interval,
// timing out after timeout (0: min(interval, 10s)). Combine it with
// WithTTLCheck to have both.
func WithGRPCCheck(interval, timeout time.Duration) Option {
	return func(c *config) { c.grpcInterval, c.grpcTimeout = interval, timeout }
}

// The native gRPC check RegisterWithHealth adds by default. A process
// killed with SIGKILL (or frozen, or partitioned from its agent) is
// critical at the agent's next probe: within interval + timeout, 3 s,
// instead of a TTL (DefaultTTL, 15 s). The probe is one
// grpc.health.v1.Health/Check every 2 s per instance from its agent.
const (
	DefaultServerGRPCInterval = 2 * time.Second
	DefaultServerGRPCTimeout  = time.Second
)

// WithoutServerGRPCCheck turns off the native gRPC check that
// RegisterWithHealth adds by default (see DefaultServerGRPCInterval), for
// agents that cannot reach the servers' addresses (a NAT, a container
// network): there the check would keep every instance critical. The TTL
// heartbeat stays. WithGRPCCheck, which applies to every registration,
// replaces the default check rather than adding to it.
func WithoutServerGRPCCheck() Option { return func(c *config) { c.noServerGRPC = true } }

// WithGRPCCheckService makes the gRPC check ask about service name
// instead of the server as a whole (""), and use TLS if useTLS.
func WithGRPCCheckService(name string, useTLS bool) Option {
	return func(c *config) { c.grpcService, c.grpcTLS = name, useTLS }
}

// WithHealth sets the source of truth for the TTL check. Without it the
// heartbeat reports only that the process is alive; with it (for
// example GRPCHealth(healthServer)) the check mirrors the server's real
// serving status, so a NOT_SERVING server leaves the passing set.
func WithHealth(f registry.HealthFunc) Option { return func(c *config) { c.health = f } }

// WithDeregisterCriticalAfter sets how long Consul keeps an instance
// whose checks are critical before removing it (at least 1m, the
// default).
func WithDeregisterCriticalAfter(d time.Duration) Option {
	return func(c *config) { c.deregisterAfter = d }
}

// WithResync sets how often a registration without a TTL check verifies
// that the agent still knows the service (DefaultResync).
func WithResync(d time.Duration) Option { return func(c *config) { c.resync = d } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }
