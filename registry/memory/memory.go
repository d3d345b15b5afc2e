package memory

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Scheme is the URL scheme of the in-process registry.
const Scheme = "mem"

func init() {
	registry.RegisterScheme(Scheme, urlOpener{})
}

// urlOpener opens "mem://" and "mem://name" URLs.
type urlOpener struct{}

func (urlOpener) OpenRegistry(ctx context.Context, u *url.URL) (registry.Registry, error) {
	return openURL(ctx, u)
}

func (urlOpener) ValidateURL(u *url.URL) error { return validateURL(u) }

// Store holds registrations. It is safe for concurrent use.
//
// mu guards every field, and every field of every service.
type Store struct {
	mu       sync.Mutex
	services map[string]*service
	down     error // non-nil while an outage is simulated
	downGen  uint64
}

type service struct {
	instances map[string]registry.Instance
	// version counts the service's changes; watchers report it as their
	// registry.IndexedWatcher index.
	version uint64
	// changed is closed and replaced on every change, waking all watchers
	// at once without a goroutine per watcher.
	changed chan struct{}
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{services: map[string]*service{}} }

var (
	namedMu sync.Mutex
	named   = map[string]*Store{}
)

// Named returns the process-wide store called name, creating it on first
// use. "mem://" opens Named(""), "mem://name" opens Named("name").
func Named(name string) *Store {
	namedMu.Lock()
	defer namedMu.Unlock()
	s, ok := named[name]
	if !ok {
		s = NewStore()
		named[name] = s
	}
	return s
}

// Default returns the process-wide default store, the one "mem://" opens.
func Default() *Store { return Named("") }

func openURL(_ context.Context, u *url.URL) (registry.Registry, error) {
	if err := validateURL(u); err != nil {
		return nil, err
	}
	return Named(u.Host).Open(), nil
}

func validateURL(u *url.URL) error {
	if err := registry.CheckURL(u); err != nil {
		return err
	}
	if u.Scheme != Scheme {
		return fmt.Errorf("%w: memory: scheme %q, want %q", registry.ErrInvalidURL, u.Scheme, Scheme)
	}
	return registry.CheckParams(Scheme, u.Query())
}

// svc returns the service entry, creating it. Callers hold s.mu.
func (s *Store) svc(name string) *service {
	sv, ok := s.services[name]
	if !ok {
		sv = &service{instances: map[string]registry.Instance{}, changed: make(chan struct{})}
		s.services[name] = sv
	}
	return sv
}

func (sv *service) bump() {
	sv.version++
	close(sv.changed)
	sv.changed = make(chan struct{})
}

// SetOutage makes the store behave like an unreachable registry while err
// is non-nil: every call fails with an error wrapping both
// registry.ErrUnavailable and err, and watchers report it. SetOutage(nil)
// ends the outage. It exists so that clients' handling of registry
// failures can be exercised with the embedded backend.
func (s *Store) SetOutage(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("%w: memory: %w", registry.ErrUnavailable, err)
	}
	s.down = err
	s.downGen++
	for _, sv := range s.services {
		close(sv.changed)
		sv.changed = make(chan struct{})
	}
}

// Open returns a Registry client over the store.
func (s *Store) Open() *Registry {
	return &Registry{store: s, done: make(chan struct{})}
}

// Registry is a client of a Store. Closing it closes its watchers but
// leaves the store and its registrations alone.
type Registry struct {
	store     *Store
	closeOnce sync.Once
	done      chan struct{}
}

var (
	_ registry.Registry      = (*Registry)(nil)
	_ registry.ServiceLister = (*Registry)(nil)
)

// New returns a client of a new, private store.
func New() *Registry { return NewStore().Open() }

// Store returns the store the client uses.
func (r *Registry) Store() *Store { return r.store }

func (r *Registry) check(ctx context.Context) error {
	select {
	case <-r.done:
		return fmt.Errorf("memory: %w", registry.ErrClosed)
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return r.store.down
}

// Register implements registry.Registrar.
func (r *Registry) Register(ctx context.Context, inst registry.Instance) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	s := r.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := r.check(ctx); err != nil {
		return err
	}
	sv := s.svc(inst.Service)
	if old, ok := sv.instances[inst.ID]; ok && old.Equal(inst) {
		return nil // keeps the original Registered stamp
	}
	inst = inst.Clone()
	inst.Registered = time.Now()
	sv.instances[inst.ID] = inst
	sv.bump()
	return nil
}

// Deregister implements registry.Registrar.
func (r *Registry) Deregister(ctx context.Context, inst registry.Instance) error {
	if err := registry.ValidateService(inst.Service); err != nil {
		return err
	}
	s := r.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := r.check(ctx); err != nil {
		return err
	}
	sv := s.svc(inst.Service)
	if _, ok := sv.instances[inst.ID]; !ok {
		return nil
	}
	delete(sv.instances, inst.ID)
	sv.bump()
	return nil
}

// Lookup implements registry.Discovery.
func (r *Registry) Lookup(ctx context.Context, service string) ([]registry.Instance, error) {
	if err := registry.ValidateService(service); err != nil {
		return nil, err
	}
	s := r.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := r.check(ctx); err != nil {
		return nil, err
	}
	return s.svc(service).snapshot(), nil
}

// snapshot copies the instances, sorted. Callers hold the store's mu.
func (sv *service) snapshot() []registry.Instance {
	out := make([]registry.Instance, 0, len(sv.instances))
	for _, inst := range sv.instances {
		out = append(out, inst.Clone())
	}
	registry.SortByID(out)
	return out
}

// Watch implements registry.Discovery.
func (r *Registry) Watch(ctx context.Context, service string) (registry.Watcher, error) {
	if err := registry.ValidateService(service); err != nil {
		return nil, err
	}
	select {
	case <-r.done:
		return nil, fmt.Errorf("memory: %w", registry.ErrClosed)
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &watcher{reg: r, service: service, closed: make(chan struct{})}, nil
}

// Close implements registry.Registry. It is idempotent.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() { close(r.done) })
	return nil
}

type watcher struct {
	reg     *Registry
	service string

	closeOnce sync.Once
	closed    chan struct{}

	// index is the service's version when the set Next last returned was
	// read, plus one, so that 0 means no set yet. Next stores it; Index
	// may load it from any goroutine.
	index atomic.Uint64

	// Owned by the single goroutine calling Next.
	started  bool
	last     []registry.Instance
	errGen   uint64 // downGen of the last error returned
	afterErr bool   // an error was returned since the last set
}

var _ registry.IndexedWatcher = (*watcher)(nil)

// Index implements registry.IndexedWatcher: the service's change counter
// when the set Next last returned was read, such as "3" after three
// changes, or "" before Next has returned a set.
func (w *watcher) Index() string {
	n := w.index.Load()
	if n == 0 {
		return ""
	}
	return strconv.FormatUint(n-1, 10)
}

func (w *watcher) Next(ctx context.Context) ([]registry.Instance, error) {
	s := w.reg.store
	for {
		select {
		case <-w.closed:
			return nil, fmt.Errorf("memory: watch %q: %w", w.service, registry.ErrClosed)
		case <-w.reg.done:
			return nil, fmt.Errorf("memory: watch %q: %w", w.service, registry.ErrClosed)
		default:
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		sv := s.svc(w.service)
		wake := sv.changed
		if s.down != nil {
			if w.errGen != s.downGen {
				w.errGen, w.afterErr = s.downGen, true
				err := s.down
				s.mu.Unlock()
				return nil, fmt.Errorf("memory: watch %q: %w", w.service, err)
			}
		} else {
			set := sv.snapshot()
			if !w.started || w.afterErr || !registry.EqualSets(set, w.last) {
				w.started, w.afterErr, w.last = true, false, set
				w.index.Store(sv.version + 1)
				s.mu.Unlock()
				return cloneAll(set), nil
			}
		}
		s.mu.Unlock()
		select {
		case <-wake:
		case <-w.closed:
		case <-w.reg.done:
		case <-ctx.Done():
		}
	}
}

func cloneAll(in []registry.Instance) []registry.Instance {
	out := make([]registry.Instance, len(in))
	for i, inst := range in {
		out[i] = inst.Clone()
	}
	return out
}

func (w *watcher) Close() error {
	w.closeOnce.Do(func() { close(w.closed) })
	return nil
}

// Services implements registry.ServiceLister.
func (r *Registry) Services(ctx context.Context) ([]string, error) {
	s := r.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := r.check(ctx); err != nil {
		return nil, err
	}
	var out []string
	for name, sv := range s.services {
		if len(sv.instances) > 0 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}
