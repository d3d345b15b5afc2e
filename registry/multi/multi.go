package multi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	"github.com/wayfinder-rpc/wayfinder/registry/driver/drivermetrics"
)

// Member is one registry of a multi Registry, and how its messages name
// it: its URL, redacted as driver.Redact does ("consul://10.0.0.1:8500").
type Member struct {
	Name     string
	Registry registry.Registry
}

// Option configures New.
type Option func(*options)

type options struct {
	log          *slog.Logger
	shadow       []Member
	mp           metric.MeterProvider
	retryTimeout time.Duration
	retryBase    time.Duration
	retryMax     time.Duration
}

// DefaultRetryTimeout bounds each background retry of a write member
// whose write failed, for members whose calls have no bound of their
// own; every backend of this module bounds its calls more tightly.
const DefaultRetryTimeout = 30 * time.Second

// WithLogger sets the logger of multi's own logs (a write member that
// caught up after failing, at Info; each failed retry, at Debug); nil
// means slog.Default.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithShadow makes members shadow registries: read, never served, and
// compared with the union of the read members for every watched service
// (ShadowDifferences, and the gauge wayfinder.discovery.shadow_differences).
// A shadow's outage is neither reported nor waited for. Close closes
// them.
func WithShadow(members ...Member) Option {
	return func(o *options) { o.shadow = append(o.shadow, members...) }
}

// WithMeterProvider records multi's metric on mp (OpenTelemetry's global
// provider if nil): wayfinder.discovery.shadow_differences, the
// instances the shadow registries hold differently from the read ones
// over the watched services, with wayfinder.backend=multi.
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.mp = mp } }

// WithRetry sets the background retries of a failed write member: the
// backoff between attempts (base doubling to max, jittered, as
// internal/backoff draws it) and the bound of each attempt. The defaults
// are 100ms, 10s and DefaultRetryTimeout.
func WithRetry(base, max, timeout time.Duration) Option {
	return func(o *options) { o.retryBase, o.retryMax, o.retryTimeout = base, max, timeout }
}

// Registry is a registry composed of others: reads are the union of its
// read members', writes go to every write member. See the package
// documentation for the rules.
type Registry struct {
	read    []*member // in the order listed: the first wins an ID
	write   []*member
	shadow  []*member
	all     []*member // distinct registries, closed by Close
	opts    options
	watches driver.Watchers

	ctx    context.Context // cancelled by Close; bounds the retriers
	cancel context.CancelFunc
	wg     sync.WaitGroup // the retriers

	closeOnce sync.Once
	unmetric  func()

	// shadowMu guards diffs: the latest comparison of each watch
	// feed with shadows, by service.
	shadowMu sync.Mutex
	diffs    map[string]map[*unionFeed][]Difference

	// mu guards wants and changed, and every want's member states.
	mu      sync.Mutex
	wants   map[string]*want
	changed chan struct{}
}

// member is one distinct registry, in one or both roles.
type member struct {
	name string
	reg  registry.Registry
	pos  int // index in Registry.write, for a write member's states

	kick chan struct{} // wakes the retrier of a write member; 1 slot

	// slots serialises the writes of one instance to this member, so
	// that a retried Register never lands after a later Deregister. An
	// entry lives while an attempt holds or waits for it, so the map
	// does not grow with every instance ID ever written.
	slotsMu sync.Mutex
	slots   map[string]*slot
}

// slot is a 1-slot semaphore and the number of attempts using it.
type slot struct {
	sem   chan struct{}
	users int
}

var (
	_ registry.Registry             = (*Registry)(nil)
	_ registry.HealthRegistrar      = (*Registry)(nil)
	_ registry.ServiceLister        = (*Registry)(nil)
	_ registry.StatusReporter       = (*Registry)(nil)
	_ registry.FieldProblemReporter = (*Registry)(nil)
)

// New returns a Registry over the given members, which it owns: Close
// closes them. A registry may be in both lists (the same value); read
// must not be empty; write may be, for a read-only Registry whose
// Register and Deregister fail with ErrReadOnly. Members are named by
// their Name in errors; a nil Registry is an error.
func New(read, write []Member, opts ...Option) (*Registry, error) {
	if len(read) == 0 {
		return nil, errors.New("multi: no read member")
	}
	o := options{retryTimeout: DefaultRetryTimeout, retryBase: 100 * time.Millisecond, retryMax: 10 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{opts: o, ctx: ctx, cancel: cancel, wants: map[string]*want{}, changed: make(chan struct{}),
		diffs: map[string]map[*unionFeed][]Difference{}}
	byReg := map[registry.Registry]*member{}
	get := func(m Member) (*member, error) {
		if m.Registry == nil {
			return nil, fmt.Errorf("multi: member %s has no Registry", m.Name)
		}
		if mm, ok := byReg[m.Registry]; ok {
			return mm, nil
		}
		mm := &member{name: m.Name, reg: m.Registry, pos: -1, slots: map[string]*slot{}}
		byReg[m.Registry] = mm
		r.all = append(r.all, mm)
		return mm, nil
	}
	for _, m := range read {
		mm, err := get(m)
		if err != nil {
			cancel()
			return nil, err
		}
		r.read = append(r.read, mm)
	}
	for _, m := range write {
		mm, err := get(m)
		if err != nil {
			cancel()
			return nil, err
		}
		if mm.pos >= 0 {
			cancel()
			return nil, fmt.Errorf("multi: write member %s listed twice", m.Name)
		}
		mm.pos = len(r.write)
		mm.kick = make(chan struct{}, 1)
		r.write = append(r.write, mm)
	}
	for _, m := range o.shadow {
		mm, err := get(m)
		if err != nil {
			cancel()
			return nil, err
		}
		r.shadow = append(r.shadow, mm)
	}
	for _, m := range r.write {
		r.wg.Go(func() { r.retry(m) })
	}
	r.unmetric = drivermetrics.Register(o.mp, "github.com/wayfinder-rpc/wayfinder/registry/multi", Scheme, []drivermetrics.Spec{
		{Name: "wayfinder.discovery.shadow_differences", Unit: "{instance}",
			Desc: "Instances the shadow registries hold differently from the read ones (only in one, or with other fields), over the watched services."},
	}, func() map[string]int64 {
		return map[string]int64{"wayfinder.discovery.shadow_differences": int64(r.shadowCount())}
	})
	return r, nil
}

// ErrReadOnly is wrapped by the error of Register and Deregister on a
// Registry without a write member.
var ErrReadOnly = errors.New("multi: read-only registry (no write member; add write=<registry URL>)")

func (r *Registry) closedErr(op string) error {
	if r.ctx.Err() != nil {
		return fmt.Errorf("multi: %s: %w", op, registry.ErrClosed)
	}
	return nil
}

// Close closes the Registry's watchers, stops its background retries and
// closes every member. It does not deregister anything. It is
// idempotent; it returns the members' errors, joined.
func (r *Registry) Close() error {
	var err error
	r.closeOnce.Do(func() {
		r.cancel()
		r.unmetric()
		r.watches.CloseAll()
		r.wg.Wait()
		var errs []error
		for _, m := range r.all {
			if e := m.reg.Close(); e != nil {
				errs = append(errs, fmt.Errorf("multi: close %s: %w", m.name, e))
			}
		}
		err = errors.Join(errs...)
	})
	return err
}

// shadowCount is the gauge's value: per watched service, the
// differences of its latest comparison, summed.
func (r *Registry) shadowCount() int {
	r.shadowMu.Lock()
	defer r.shadowMu.Unlock()
	n := 0
	for _, byFeed := range r.diffs {
		most := 0
		for _, d := range byFeed {
			most = max(most, len(d))
		}
		n += most
	}
	return n
}

// ShadowDifferences returns how the shadow registries differ from the
// read ones for service, as of the latest comparison of a watch of it
// (Compare's form, "old" being the read union and "new" the shadow
// union), or nil if no watch of service has compared yet. A comparison
// is made whenever a read or shadow member of a watch reports a set, once
// every one of them has.
func (r *Registry) ShadowDifferences(service string) []Difference {
	r.shadowMu.Lock()
	defer r.shadowMu.Unlock()
	for _, d := range r.diffs[service] {
		return slices.Clone(d)
	}
	return nil
}

func (r *Registry) setShadow(service string, u *unionFeed, d []Difference) {
	r.shadowMu.Lock()
	defer r.shadowMu.Unlock()
	if d == nil {
		delete(r.diffs[service], u)
		if len(r.diffs[service]) == 0 {
			delete(r.diffs, service)
		}
		return
	}
	if r.diffs[service] == nil {
		r.diffs[service] = map[*unionFeed][]Difference{}
	}
	r.diffs[service][u] = d
}

// Members returns the names of the read and the write members, in the
// order listed, for tools and debug pages.
func (r *Registry) Members() (read, write []string) {
	for _, m := range r.read {
		read = append(read, m.name)
	}
	for _, m := range r.write {
		write = append(write, m.name)
	}
	return read, write
}
