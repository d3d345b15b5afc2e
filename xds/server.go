package xds

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/wayfinder-rpc/wayfinder/instance"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

// Server is an xDS management server: it serves the listener, cluster
// and endpoints of every service its clients ask for, from one shared
// watch per service on a registry.Discovery.
type Server struct {
	cache    *resolver.Cache
	ownCache bool
	canary   map[string][]canary       // by service; read-only after New
	policy   map[string]*servicePolicy // by service; read-only after New
	builder  *resolver.Builder
	logger   *slog.Logger
	creds    credentials.TransportCredentials // for Serve; nil: plaintext

	// The resource caches, one per type, shared by every client: a
	// service's resources are the same for all of them.
	lds, rds, cds, eds *cachev3.LinearCache
	xds                serverv3.Server
	cancel             context.CancelFunc

	nacks     atomic.Int64
	outages   atomic.Int64
	responses atomic.Int64

	// mu guards the fields below. Lock order: mu, then a service's mu,
	// then the resource caches' own locks. Resolvers are closed without
	// mu held: a resolver's goroutine takes a service's mu.
	mu       sync.Mutex
	streams  map[streamKey]*stream
	services map[string]*service
	grpc     []*grpc.Server // servers Serve runs
	closed   bool
	wg       sync.WaitGroup // Serve's goroutines
}

type streamKey struct {
	delta bool // the SotW and Delta servers number their streams apart
	id    int64
}

// stream is what one ADS stream asks for: resource names by type URL,
// and the services they name.
type stream struct {
	node     string
	names    map[string]map[string]bool
	services map[string]bool
	status   map[string]*typeStatus // by type URL, for CSDS
}

// service is one service that at least one stream asks for.
type service struct {
	name string
	refs int // streams that ask for it
	res  gresolver.Resolver

	// mu guards active and the service's resources in the caches, so
	// that a late update from the registry never writes the resources of
	// a service that was released.
	mu     sync.Mutex
	active bool
	canary []canary // its canary versions, in the order given
	route  []uint32 // the weights of the listener served: the stable set, then each canary
}

// Option configures a Server.
type Option func(*options)

type options struct {
	cache   *resolver.Cache
	logger  *slog.Logger
	canary  map[string][]canary
	policy  map[string]*servicePolicy
	creds   credentials.TransportCredentials
	invalid []error
}

// canary is one version of a service's split: the instances of version
// get percent of the calls.
type canary struct {
	version string
	percent uint32
}

// WithCache makes the server watch services through c, shared with the
// rest of the process (and its debug page), instead of a cache of its
// own. The server does not close c.
func WithCache(c *resolver.Cache) Option { return func(o *options) { o.cache = c } }

// WithLogger sets the logger for what an operator must know: clients
// that reject a resource (NACK) and registry outages. Default: discard.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithServerCredentials makes Serve serve ADS and CSDS with creds, such
// as credentials.NewTLS for TLS, instead of plaintext. Clients then need
// a bootstrap whose channel_creds is "tls" (BootstrapConfig.CAFile).
// Register ignores it: the grpc.Server given to it has its own.
func WithServerCredentials(creds credentials.TransportCredentials) Option {
	return func(o *options) {
		if creds == nil {
			o.invalid = append(o.invalid, errors.New("xds: server credentials: nil"))
			return
		}
		o.creds = creds
	}
}

// WithCanary splits service's calls by version: the instances whose
// Instance.Version is version get percent of the calls (in every client
// language, as weighted clusters), the others (the stable set) the
// rest. Give it once per version for several canaries of one service,
// such as v2 at 10% and v3 at 5%: their percents add up to at most 99.
// While a canary version has no instance, its share goes to the stable
// set; while the stable set has none, the canaries present share every
// call in proportion to their percents. percent is 1 to 99. Each
// canary's cluster and endpoints are named "<service>/<version>".
func WithCanary(service, version string, percent int) Option {
	return func(o *options) {
		switch {
		case validService(service) != nil:
			o.invalid = append(o.invalid, fmt.Errorf("xds: canary: %w", validService(service)))
		case version == "" || strings.ContainsAny(version, "/"):
			o.invalid = append(o.invalid, fmt.Errorf("xds: canary of %q: version %q: want a non-empty version without '/'", service, version))
		case percent < 1 || percent > 99:
			o.invalid = append(o.invalid, fmt.Errorf("xds: canary of %q: percent %d: want 1 to 99", service, percent))
		case slices.ContainsFunc(o.canary[service], func(c canary) bool { return c.version == version }):
			o.invalid = append(o.invalid, fmt.Errorf("xds: canary of %q: version %q given twice", service, version))
		default:
			if o.canary == nil {
				o.canary = map[string][]canary{}
			}
			o.canary[service] = append(o.canary[service], canary{version: version, percent: uint32(percent)})
		}
	}
}

func validService(s string) error { return registry.ValidateService(s) }

// New returns a server over d. It watches nothing until a client asks
// for a service. Serve it with Serve, or register it on a grpc.Server of
// your own with Register; Close stops it.
//
// Without WithCache, the server's own cache stops a service's upstream
// watch as soon as no client asks for it any more
// (resolver.WithLinger(0)) and keeps the mass-removal guard's defaults.
// It fails only for invalid options.
func New(d registry.Discovery, opts ...Option) (*Server, error) {
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, f := range opts {
		f(&o)
	}
	for name, cs := range o.canary {
		sum := 0
		for _, c := range cs {
			sum += int(c.percent)
		}
		if sum > 99 {
			o.invalid = append(o.invalid, fmt.Errorf("xds: canaries of %q: %d%% in all: want at most 99, leaving the stable set 1%% or more", name, sum))
		}
	}
	for name, p := range o.policy {
		if p.hashHeader != "" && !p.ringHash {
			o.invalid = append(o.invalid, fmt.Errorf("xds: hash header of %q: its policy is not ring_hash (WithPolicy)", name))
		}
	}
	if err := errors.Join(o.invalid...); err != nil {
		return nil, err
	}
	s := &Server{
		cache:    o.cache,
		logger:   o.logger,
		canary:   o.canary,
		policy:   o.policy,
		creds:    o.creds,
		streams:  map[streamKey]*stream{},
		services: map[string]*service{},
	}
	if s.cache == nil {
		s.cache = resolver.NewCache(resolver.WithLinger(0), resolver.WithLogger(o.logger))
		s.ownCache = true
	}
	s.builder = resolver.NewBuilder(d, resolver.WithCache(s.cache))
	// Each server's versions carry a prefix of their own, so that a
	// client that reconnects to a restarted server, or to another
	// replica, is answered in full rather than compared with versions
	// another server numbered.
	prefix := randomPrefix()
	s.lds = cachev3.NewLinearCache(resourcev3.ListenerType, cachev3.WithVersionPrefix(prefix))
	s.rds = cachev3.NewLinearCache(resourcev3.RouteType, cachev3.WithVersionPrefix(prefix))
	s.cds = cachev3.NewLinearCache(resourcev3.ClusterType, cachev3.WithVersionPrefix(prefix))
	s.eds = cachev3.NewLinearCache(resourcev3.EndpointType, cachev3.WithVersionPrefix(prefix))
	mux := &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return r.GetTypeUrl() },
		Caches: map[string]cachev3.Cache{
			resourcev3.ListenerType: s.lds,
			resourcev3.RouteType:    s.rds,
			resourcev3.ClusterType:  s.cds,
			resourcev3.EndpointType: s.eds,
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.xds = serverv3.NewServer(ctx, mux, callbacks{s})
	return s, nil
}

func randomPrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:]) + "-"
}

// Register registers the aggregated discovery service (ADS, State of the
// World and Delta) and the client status discovery service (CSDS) on g.
// Stopping g ends the streams; Close the Server after g has stopped.
func (s *Server) Register(g *grpc.Server) {
	discoverypb.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
	statuspb.RegisterClientStatusDiscoveryServiceServer(g, csds{s: s})
}

// Serve serves ADS on lis until Close, over plaintext unless
// WithServerCredentials says otherwise. It returns nil after Close, or
// the error that ended serving; called after Close, it closes lis and
// returns registry.ErrClosed.
func (s *Server) Serve(lis net.Listener) error {
	var gopts []grpc.ServerOption
	if s.creds != nil {
		gopts = append(gopts, grpc.Creds(s.creds))
	}
	g := grpc.NewServer(gopts...)
	s.Register(g)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		lis.Close()
		return registry.ErrClosed
	}
	s.grpc = append(s.grpc, g)
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	if err := g.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("xds: serve: %w", err)
	}
	return nil
}

// Close stops the servers Serve runs (ending their streams), releases
// every service and its upstream watch, and waits for all of it.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	gs := s.grpc
	s.mu.Unlock()
	for _, g := range gs {
		// Stop, not GracefulStop: ADS streams never end on their own.
		g.Stop()
	}
	s.wg.Wait()
	s.cancel()
	s.mu.Lock()
	var closing []gresolver.Resolver
	for _, svc := range s.services {
		closing = append(closing, s.releaseLocked(svc))
	}
	s.services = map[string]*service{}
	s.streams = map[streamKey]*stream{}
	s.mu.Unlock()
	for _, r := range closing {
		r.Close()
	}
	if s.ownCache {
		return s.cache.Close()
	}
	return nil
}

// Stats describes a Server, for tests, metrics and debug pages.
type Stats struct {
	Streams   int   // ADS streams open
	Services  int   // services some stream asks for
	NACKs     int64 // responses clients rejected, since New
	Outages   int64 // registry errors reported by the services' watches, since New
	Responses int64 // responses sent, since New
}

// Stats returns current counts.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Streams: len(s.streams), Services: len(s.services), NACKs: s.nacks.Load(), Outages: s.outages.Load(), Responses: s.responses.Load()}
}

// serviceOf returns the service a resource name names, or false for a
// name this server does not serve (a wildcard, an xdstp:// name, a name
// that is not a service name).
func serviceOf(name string) (string, bool) {
	name, _, _ = strings.Cut(name, "/") // a canary's "<service>/<version>"
	if registry.ValidateService(name) != nil {
		return "", false
	}
	return name, true
}

// update records what stream k asks for now and acquires or releases
// services accordingly. set replaces a type's names (State of the
// World); add and remove change them (Delta).
func (s *Server) update(k streamKey, node *corepb.Node, typeURL string, set []string, replace bool, add, remove []string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return registry.ErrClosed
	}
	st := s.streamLocked(k)
	if node != nil && node.GetId() != "" {
		st.node = node.GetId()
	}
	names := st.names[typeURL]
	if replace || names == nil {
		names = map[string]bool{}
		st.names[typeURL] = names
	}
	for _, n := range set {
		names[n] = true
	}
	for _, n := range add {
		names[n] = true
	}
	for _, n := range remove {
		delete(names, n)
	}
	want := map[string]bool{}
	for _, ns := range st.names {
		for n := range ns {
			if svc, ok := serviceOf(n); ok {
				want[svc] = true
			}
		}
	}
	var errs []error
	for name := range want {
		if !st.services[name] {
			if err := s.acquireLocked(name); err != nil {
				errs = append(errs, err)
				continue
			}
			st.services[name] = true
		}
	}
	var closing []gresolver.Resolver
	for name := range st.services {
		if !want[name] {
			delete(st.services, name)
			if r := s.unrefLocked(name); r != nil {
				closing = append(closing, r)
			}
		}
	}
	s.mu.Unlock()
	for _, r := range closing {
		r.Close()
	}
	if err := errors.Join(errs...); err != nil {
		// The stream goes on: the client sees the resources it can get.
		s.logger.Warn("xds: cannot serve a service", "node", st.node, "err", err)
	}
	return nil
}

// closeStream releases what stream k asked for.
func (s *Server) closeStream(k streamKey) {
	s.mu.Lock()
	st := s.streams[k]
	delete(s.streams, k)
	var closing []gresolver.Resolver
	if st != nil && !s.closed {
		for name := range st.services {
			if r := s.unrefLocked(name); r != nil {
				closing = append(closing, r)
			}
		}
	}
	s.mu.Unlock()
	for _, r := range closing {
		r.Close()
	}
}

// acquireLocked adds a reference to service name, starting it (its
// listener and cluster at once, its endpoints from its watch's first
// set) for the first. Callers hold s.mu.
func (s *Server) acquireLocked(name string) error {
	if svc := s.services[name]; svc != nil {
		svc.refs++
		return nil
	}
	svc := &service{name: name, refs: 1, active: true, canary: s.canary[name]}
	svc.route = make([]uint32, 1+len(svc.canary))
	svc.route[0] = 100
	lis, err := listener(name, svc.clusters(), svc.route, s.policy[name])
	if err != nil {
		return fmt.Errorf("xds: service %q: listener: %w", name, err)
	}
	if err := s.lds.UpdateResource(name, lis); err != nil {
		return fmt.Errorf("xds: service %q: %w", name, err)
	}
	if err := s.cds.UpdateResource(name, cluster(name, s.policy[name])); err != nil {
		return fmt.Errorf("xds: service %q: %w", name, err)
	}
	for _, cn := range svc.clusters()[1:] {
		if err := s.cds.UpdateResource(cn, cluster(cn, s.policy[name])); err != nil {
			return fmt.Errorf("xds: service %q: %w", name, err)
		}
	}
	// Build subscribes to the shared watch and never blocks on the
	// network; the first set (or error) arrives through feed.
	target := gresolver.Target{URL: url.URL{Scheme: resolver.DefaultScheme, Path: "/" + name}}
	r, err := s.builder.Build(target, &feed{s: s, svc: svc}, gresolver.BuildOptions{})
	if err != nil {
		_ = s.lds.DeleteResource(name)
		for _, cn := range svc.clusters() {
			_ = s.cds.DeleteResource(cn)
		}
		return fmt.Errorf("xds: service %q: %w", name, err)
	}
	svc.res = r
	s.services[name] = svc
	return nil
}

// unrefLocked drops a reference to service name and releases it with the
// last, returning its resolver for the caller to close without s.mu.
func (s *Server) unrefLocked(name string) gresolver.Resolver {
	svc := s.services[name]
	if svc == nil {
		return nil
	}
	svc.refs--
	if svc.refs > 0 {
		return nil
	}
	delete(s.services, name)
	return s.releaseLocked(svc)
}

// releaseLocked deletes svc's resources and deactivates it, so that its
// resolver's late updates are dropped.
func (s *Server) releaseLocked(svc *service) gresolver.Resolver {
	svc.mu.Lock()
	svc.active = false
	_ = s.lds.DeleteResource(svc.name)
	for _, cn := range svc.clusters() {
		_ = s.cds.DeleteResource(cn)
		_ = s.eds.DeleteResource(cn)
	}
	svc.mu.Unlock()
	return svc.res
}

// feed receives a service's sets from the shared watch, as a gRPC
// resolver's ClientConn would: the resolver package already keeps the
// contract (the last good set on an error, the mass-removal guard).
type feed struct {
	s   *Server
	svc *service
}

// UpdateState implements resolver.ClientConn: a new set of instances,
// the full set, empty only when the service has none.
func (f *feed) UpdateState(st gresolver.State) error {
	insts := make([]registry.Instance, 0, len(st.Endpoints))
	for _, ep := range st.Endpoints {
		if inst, ok := instance.FromEndpoint(ep); ok {
			insts = append(insts, inst)
		}
	}
	f.svc.mu.Lock()
	defer f.svc.mu.Unlock()
	if !f.svc.active {
		return nil
	}
	if err := f.s.publish(f.svc, insts); err != nil {
		// Registries validate addresses, so this is a bug; clients keep
		// the last good endpoints.
		f.s.logger.Error("xds: cannot serve a set; keeping the last good one", "service", f.svc.name, "err", err)
	}
	return nil
}

// clusters returns the names of svc's clusters (and endpoints): the
// service's own, for its stable set, then "<service>/<version>" for each
// canary.
func (svc *service) clusters() []string {
	names := []string{svc.name}
	for _, c := range svc.canary {
		names = append(names, svc.name+"/"+c.version)
	}
	return names
}

// publish serves insts as svc's endpoints: one ClusterLoadAssignment,
// or, with canaries, one per canary version and one for the rest (the
// stable set), and a listener whose route weighs them: each canary with
// instances gets its percent, the stable set the rest; a side with no
// instance gets none, unless no side has any. Callers hold svc.mu.
func (s *Server) publish(svc *service, insts []registry.Instance) error {
	if len(svc.canary) == 0 {
		cla, err := loadAssignment(svc.name, insts)
		if err != nil {
			return err
		}
		return s.eds.UpdateResource(svc.name, cla)
	}
	names := svc.clusters()
	sides := make([][]registry.Instance, len(names)) // stable, then each canary
	for _, inst := range insts {
		i := 1 + slices.IndexFunc(svc.canary, func(c canary) bool { return c.version == inst.Version })
		sides[i] = append(sides[i], inst)
	}
	route := make([]uint32, len(names))
	route[0] = 100
	for i, c := range svc.canary {
		if len(sides[i+1]) > 0 {
			route[i+1] = c.percent
			route[0] -= c.percent
		}
	}
	if len(sides[0]) == 0 && route[0] < 100 {
		route[0] = 0 // the canaries present share every call
	}
	// Only the sides the new route sends calls to get endpoints: a side
	// the route leaves keeps its last endpoints, since a client may get
	// the route after them (responses of different types are not
	// ordered: one waits for the client's ACK of the previous one), and
	// until then it still sends calls there. Endpoints go first, so that
	// a route never names a cluster whose endpoints a client cannot
	// have.
	set := map[string]types.Resource{}
	for i, w := range route {
		if w == 0 {
			continue
		}
		cla, err := loadAssignment(names[i], sides[i])
		if err != nil {
			return err
		}
		set[names[i]] = cla
	}
	if err := s.eds.UpdateResources(set, nil); err != nil {
		return err
	}
	if slices.Equal(route, svc.route) {
		return nil
	}
	lis, err := listener(svc.name, names, route, s.policy[svc.name])
	if err != nil {
		return err
	}
	if err := s.lds.UpdateResource(svc.name, lis); err != nil {
		return err
	}
	svc.route = route
	return nil
}

// ReportError implements resolver.ClientConn: the registry is away, or
// the service has no instances (reported after its empty set). The
// endpoints clients have stay as they are.
func (f *feed) ReportError(err error) {
	f.s.outages.Add(1)
	f.s.logger.Warn("xds: registry error; serving the last good endpoints", "service", f.svc.name, "err", err)
}

// NewAddress implements resolver.ClientConn; the resolver never calls it.
func (f *feed) NewAddress([]gresolver.Address) {}

// ParseServiceConfig implements resolver.ClientConn; the resolver never
// calls it.
func (f *feed) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{Err: errors.New("xds: no service config")}
}

// callbacks tracks what each ADS stream asks for, and counts NACKs.
type callbacks struct{ s *Server }

var _ serverv3.Callbacks = callbacks{}

func (c callbacks) OnStreamOpen(context.Context, int64, string) error { return nil }
func (c callbacks) OnStreamClosed(id int64, _ *corepb.Node)           { c.s.closeStream(streamKey{id: id}) }
func (c callbacks) OnStreamRequest(id int64, req *discoverypb.DiscoveryRequest) error {
	nack := req.GetErrorDetail() != nil
	if nack {
		c.s.nack(req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage())
	}
	c.s.answered(streamKey{id: id}, req.GetTypeUrl(), req.GetResponseNonce(), req.GetVersionInfo(), req.GetErrorDetail().GetMessage(), nack)
	return c.s.update(streamKey{id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResourceNames(), true, nil, nil)
}
func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discoverypb.DiscoveryRequest, resp *discoverypb.DiscoveryResponse) {
	c.s.responses.Add(1)
	c.s.sent(streamKey{id: id}, resp.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce())
}
func (c callbacks) OnDeltaStreamOpen(context.Context, int64, string) error { return nil }
func (c callbacks) OnDeltaStreamClosed(id int64, _ *corepb.Node) {
	c.s.closeStream(streamKey{delta: true, id: id})
}
func (c callbacks) OnStreamDeltaRequest(id int64, req *discoverypb.DeltaDiscoveryRequest) error {
	nack := req.GetErrorDetail() != nil
	if nack {
		c.s.nack(req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage())
	}
	c.s.answered(streamKey{delta: true, id: id}, req.GetTypeUrl(), req.GetResponseNonce(), "", req.GetErrorDetail().GetMessage(), nack)
	// A first request may name what the client already has, from
	// another server, in its initial versions: it still wants them.
	add := req.GetResourceNamesSubscribe()
	for n := range req.GetInitialResourceVersions() {
		add = append(add, n)
	}
	return c.s.update(streamKey{delta: true, id: id}, req.GetNode(), req.GetTypeUrl(), nil, false, add, req.GetResourceNamesUnsubscribe())
}
func (c callbacks) OnStreamDeltaResponse(id int64, _ *discoverypb.DeltaDiscoveryRequest, resp *discoverypb.DeltaDiscoveryResponse) {
	c.s.responses.Add(1)
	c.s.sent(streamKey{delta: true, id: id}, resp.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce())
}
func (c callbacks) OnFetchRequest(context.Context, *discoverypb.DiscoveryRequest) error {
	return errors.New("xds: fetch (REST) is not served")
}
func (c callbacks) OnFetchResponse(*discoverypb.DiscoveryRequest, *discoverypb.DiscoveryResponse) {}

// nack records a client's rejection of a response. The client keeps the
// last version it accepted (the xDS protocol's rule), so nothing is
// resent until the resource changes.
func (s *Server) nack(node *corepb.Node, typeURL, nonce, msg string) {
	s.nacks.Add(1)
	s.logger.Warn("xds: client rejected a response (NACK); it keeps its last accepted version",
		"node", node.GetId(), "type", typeURL, "nonce", nonce, "err", msg)
}
