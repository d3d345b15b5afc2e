package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// Scheme is the URL scheme of the Kubernetes backend.
const Scheme = "kubernetes"

// Defaults.
const (
	DefaultTimeout   = 5 * time.Second
	DefaultTTL       = 30 * time.Second
	DefaultNamespace = "default"
	// DefaultPortName names the Service port that Register creates when
	// the Service does not exist and no port was chosen.
	DefaultPortName = "grpc"
)

// Sentinel errors, wrapped together with registry.ErrUnavailable so that
// the resolver keeps its last good set and reports them.
var (
	// ErrServiceNotFound: the Service a name points at does not exist.
	ErrServiceNotFound = errors.New("kubernetes: service not found")
	// ErrPort: the Service has no port of the chosen name or number, or
	// several ports and none was chosen.
	ErrPort = errors.New("kubernetes: no such port")
)

func init() {
	driver.RegisterScheme(Scheme, &URLOpener{})
}

// URLOpener opens kubernetes:// URLs. Its fields configure every
// Registry it opens, on top of the URL's parameters; the zero value,
// which registry.DefaultURLMux holds, configures nothing more.
type URLOpener struct {
	// Logger receives the Registries' logs (WithLogger).
	Logger *slog.Logger
	// Options are applied last.
	Options []Option
}

var _ driver.LoggerOpener = (*URLOpener)(nil)

// OpenRegistryURL implements registry.Opener.
func (o *URLOpener) OpenRegistryURL(_ context.Context, u *url.URL) (registry.Registry, error) {
	opts := o.Options
	if o.Logger != nil {
		opts = append([]Option{WithLogger(o.Logger)}, opts...)
	}
	r, err := OpenURL(u, opts...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// ValidateURL implements registry.Opener.
func (o *URLOpener) ValidateURL(u *url.URL) error {
	_, err := parseURL(u)
	return err
}

// WithLogger implements driver.LoggerOpener: a copy of o with Logger l.
func (o *URLOpener) WithLogger(l *slog.Logger) registry.Opener {
	c := *o
	c.Logger = l
	return &c
}

// Option configures New and OpenURL. Options override URL parameters.
type Option func(*options)

type options struct {
	restConfig *rest.Config
	kubeconfig string
	context    string
	namespace  string
	port       string
	timeout    time.Duration
	ttl        time.Duration
	podCheck   bool
	logger     *slog.Logger
	meter      metric.MeterProvider
}

func defaultOptions() options {
	return options{timeout: DefaultTimeout, ttl: DefaultTTL, podCheck: inCluster(), logger: slog.New(slog.DiscardHandler)}
}

// inCluster reports whether this process runs in a Pod: client-go's own
// test for the in-cluster configuration.
func inCluster() bool {
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" || os.Getenv("KUBERNETES_SERVICE_PORT") == "" {
		return false
	}
	_, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/token")
	return err == nil
}

// WithRESTConfig uses cfg to reach the API server, instead of loading a
// kubeconfig or the in-cluster configuration.
func WithRESTConfig(cfg *rest.Config) Option { return func(o *options) { o.restConfig = cfg } }

// WithKubeconfig loads the kubeconfig at path instead of following
// KUBECONFIG and ~/.kube/config.
func WithKubeconfig(path string) Option { return func(o *options) { o.kubeconfig = path } }

// WithContext selects a kubeconfig context other than the current one.
func WithContext(name string) Option { return func(o *options) { o.context = name } }

// WithNamespace sets the namespace of service names that name none. The
// default is the kubeconfig context's namespace, or the Pod's own inside
// a cluster, or "default".
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithPort chooses the Service port whose endpoints are returned, by name
// ("grpc") or by Service port number ("50051"). Without it a Service
// must have exactly one port.
func WithPort(port string) Option { return func(o *options) { o.port = port } }

// WithTimeout bounds every call whose context has no deadline
// (DefaultTimeout): Register, Deregister and Lookup return within d with
// an error wrapping registry.ErrUnavailable when the API server does not
// answer; a context with a deadline is its own bound. d also bounds each
// request of a renewal and each list of a watch, and twice d is how long
// a watch may hear nothing from the API server before Next reports it.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithTTL sets how long a registration outlives its registrant: Register
// renews its slice every ttl/3, and readers drop it ttl after the last
// renewal. It is rounded down to whole seconds, at least 1s.
func WithTTL(ttl time.Duration) Option { return func(o *options) { o.ttl = ttl } }

// WithPodCheck sets whether Register first looks for the instance's
// address among the endpoints Kubernetes manages, to write nothing for a
// Pod's own endpoint (one list request per Register). The default is on
// in a cluster, where registrants are Pods, and off outside.
func WithPodCheck(on bool) Option { return func(o *options) { o.podCheck = on } }

// WithLogger sets the logger for background events. The default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Registry is a registry.Registry on the Kubernetes API: it reads the
// EndpointSlices of Services, and registers instances outside Pods as
// EndpointSlices of its own.
type Registry struct {
	opts      options
	namespace string
	name      string // the API server as errors name it (serverName)
	live      liveness
	slices    discoveryv1client.DiscoveryV1Interface
	core      corev1client.CoreV1Interface
	ctx       context.Context
	cancel    context.CancelFunc
	watchers  driver.Watchers
	problems  *driver.FieldReporter
	rewrites  atomic.Int64 // slices written again after their deletion
	relists   atomic.Int64 // full re-reads by watchers after the first
	unmeter   func()       // unregisters the metrics callback

	mu    sync.Mutex // guards ports, regs, closed and each registration's inst
	ports map[string]string
	regs  map[string]*registration // by Instance.Key
	// aliases: service -> address -> ID, for Pods that registered
	// themselves (see Register); active: the watchers to tell.
	aliases map[string]map[string]string
	active  map[string]map[*watcher]struct{}
	closed  bool
	wg      sync.WaitGroup // the renewal loops
}

var (
	_ registry.Registry             = (*Registry)(nil)
	_ registry.ServiceLister        = (*Registry)(nil)
	_ registry.StatusReporter       = (*Registry)(nil)
	_ registry.FieldProblemReporter = (*Registry)(nil)
)

// New returns a Registry. The API server and credentials come from
// WithRESTConfig, else from client-go's rules: WithKubeconfig, else
// KUBECONFIG, else ~/.kube/config, else the in-cluster configuration of
// a Pod. New reads files only: an unreachable API server surfaces from
// the methods as registry.ErrUnavailable.
func New(opts ...Option) (*Registry, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("kubernetes: timeout %v must be positive", o.timeout)
	}
	if o.ttl < time.Second || o.ttl > 24*time.Hour {
		return nil, fmt.Errorf("kubernetes: TTL %v out of range 1s..24h", o.ttl)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.port != "" {
		if err := checkPort(o.port); err != nil {
			return nil, err
		}
	}
	cfg, ns := o.restConfig, o.namespace
	if cfg == nil {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		if o.kubeconfig != "" {
			rules.ExplicitPath = o.kubeconfig
		}
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.context})
		var err error
		if cfg, err = cc.ClientConfig(); err != nil {
			return nil, fmt.Errorf("kubernetes: load configuration: %w", err)
		}
		if ns == "" {
			if n, _, err := cc.Namespace(); err == nil {
				ns = n
			}
		}
	}
	if ns == "" {
		ns = DefaultNamespace
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return nil, fmt.Errorf("kubernetes: namespace %q: %s", ns, strings.Join(errs, "; "))
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 && cfg.RateLimiter == nil {
		// client-go's default of 5 requests/s would make a thousand
		// registrations take minutes; the API server has its own
		// priority and fairness.
		cfg.QPS, cfg.Burst = 100, 200
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "wayfinder"
	}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return driver.AnswerCheck{Next: rt, Accept: apiServerAnswer, NotRegistry: errNotAPIServer}
	})
	sl, err := discoveryv1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{
		opts: o, namespace: ns, name: serverName(cfg.Host), slices: sl, core: core,
		ctx: ctx, cancel: cancel, ports: map[string]string{}, regs: map[string]*registration{},
		aliases: map[string]map[string]string{}, active: map[string]map[*watcher]struct{}{},
		problems: driver.NewFieldReporter(Scheme, o.logger),
	}
	r.unmeter = r.registerMetrics(o.meter)
	return r, nil
}

// OpenURL opens a Registry for a URL such as
// "kubernetes://?namespace=prod&port=grpc"; options override it.
func OpenURL(u *url.URL, opts ...Option) (*Registry, error) {
	uo, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	return New(append(uo, opts...)...)
}

func checkPort(p string) error {
	if n, err := strconv.Atoi(p); err == nil {
		if n < 1 || n > 65535 {
			return fmt.Errorf("kubernetes: port %d is not in 1..65535", n)
		}
		return nil
	}
	if errs := validation.IsValidPortName(p); len(errs) > 0 {
		return fmt.Errorf("kubernetes: port name %q: %s", p, strings.Join(errs, "; "))
	}
	return nil
}

// serviceRef is a Wayfinder service name split into a Kubernetes Service
// and namespace: "hello" or "hello.prod".
type serviceRef struct{ name, namespace string }

func (r *Registry) ref(service string) (serviceRef, error) {
	if err := registry.ValidateService(service); err != nil {
		return serviceRef{}, err
	}
	name, ns, hasNS := strings.Cut(service, ".")
	if !hasNS {
		ns = r.namespace
	}
	if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
		return serviceRef{}, fmt.Errorf("%w: %q: Kubernetes Service name %q: %s; want <service> or <service>.<namespace>", registry.ErrInvalidService, service, name, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return serviceRef{}, fmt.Errorf("%w: %q: namespace %q: %s; want <service> or <service>.<namespace>", registry.ErrInvalidService, service, ns, strings.Join(errs, "; "))
	}
	return serviceRef{name: name, namespace: ns}, nil
}

// portName reads the Service and returns the name of its chosen port, as
// EndpointSlices name it.
func (r *Registry) portName(ctx context.Context, ref serviceRef) (string, error) {
	ctx, cancel := r.callCtx(ctx)
	defer cancel()
	svc, err := r.core.Services(ref.namespace).Get(ctx, ref.name, metav1.GetOptions{})
	if err != nil {
		return "", r.apiError(ctx, fmt.Sprintf("service %s/%s", ref.namespace, ref.name), err)
	}
	name, err := choosePort(svc, r.opts.port)
	if err != nil {
		return "", fmt.Errorf("%w: %w", registry.ErrUnavailable, err)
	}
	r.mu.Lock()
	r.ports[ref.namespace+"/"+ref.name] = name
	r.mu.Unlock()
	return name, nil
}

// choosePort returns the name of svc's port want (a name or a number),
// or of its only port if want is empty.
func choosePort(svc *corev1.Service, want string) (string, error) {
	var names []string
	for _, p := range svc.Spec.Ports {
		if want == "" || p.Name == want || strconv.Itoa(int(p.Port)) == want {
			if want != "" || len(svc.Spec.Ports) == 1 {
				return p.Name, nil
			}
		}
		names = append(names, fmt.Sprintf("%s=%d", p.Name, p.Port))
	}
	if want == "" {
		return "", fmt.Errorf("%w: service %s/%s has %d ports (%s); choose one with ?port= or WithPort", ErrPort, svc.Namespace, svc.Name, len(names), strings.Join(names, ", "))
	}
	return "", fmt.Errorf("%w: service %s/%s has no port %q; it has %s", ErrPort, svc.Namespace, svc.Name, want, strings.Join(names, ", "))
}

func (r *Registry) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Close implements registry.Registry: it closes every watcher and stops
// renewing registrations. It does not deregister anything: what it
// registered expires a TTL later unless another Registry registers it
// again.
func (r *Registry) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	r.watchers.CloseAll()
	r.live.wg.Wait()
	r.unmeter()
	return nil
}
