package memory

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// Scheme is the URL scheme of the in-process registry.
const Scheme = "mem"

func init() {
	driver.RegisterScheme(Scheme, &URLOpener{})
}

// URLOpener opens "mem://" and "mem://name" URLs: the process-wide store
// of that name (Named). It has no settings; it is a struct like the other
// backends' openers.
type URLOpener struct{}

// OpenRegistryURL implements registry.Opener.
func (*URLOpener) OpenRegistryURL(_ context.Context, u *url.URL) (registry.Registry, error) {
	r, err := OpenURL(u)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// ValidateURL implements registry.Opener.
func (*URLOpener) ValidateURL(u *url.URL) error { return validateURL(u) }

// Open opens a client of the store named by rawURL ("mem://" or
// "mem://name").
func Open(rawURL string) (*Registry, error) {
	u, err := driver.ParseURL(Scheme, rawURL)
	if err != nil {
		return nil, err
	}
	return OpenURL(u)
}

// OpenURL is Open for a parsed URL.
func OpenURL(u *url.URL) (*Registry, error) {
	if err := validateURL(u); err != nil {
		return nil, err
	}
	return Named(u.Host).Open(), nil
}

// Store holds registrations. It is safe for concurrent use.
//
// mu guards every field, and every field of every service.
type Store struct {
	mu       sync.Mutex
	services map[string]*service
	down     error  // the cause given to SetOutage while an outage is simulated
	name     string // how errors name the store; set before the store is shared
}

type service struct {
	instances map[string]registry.Instance
	// version counts the service's changes; watchers report it as their
	// registry.IndexedWatcher index.
	version uint64
	// watchers are fed on every change, under the store's mu: the store
	// needs no goroutine per watcher, and the contract is the driver's.
	watchers map[*driver.Watcher]*Registry // and the client that opened each
}

// NewStore returns an empty store, private to its caller. Errors name it
// PrivateName.
func NewStore() *Store { return &Store{services: map[string]*service{}, name: PrivateName} }

// PrivateName is how errors name a store made by NewStore, which no URL
// opens.
const PrivateName = "mem:(private store)"

// Name returns how errors name the store: its URL, "mem://" for the
// default store and "mem://name" for Named("name"), or PrivateName.
func (s *Store) Name() string { return s.name }

// unavailable is the error of a call made during a simulated outage
// whose cause is down (see SetOutage).
func (s *Store) unavailable(op string, down error) error {
	var given *registry.UnavailableError
	if errors.As(down, &given) {
		// A whole error to simulate: keep its cause and bound, and
		// say what was attempted, without naming the store twice.
		e := *given
		e.Op = op
		if e.Registry == "" {
			e.Registry = s.name
		}
		return &e
	}
	return &registry.UnavailableError{Registry: s.name, Op: op, Cause: driver.Classify(down), Err: down}
}

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
		s.name = Scheme + "://" + name
		named[name] = s
	}
	return s
}

// Default returns the process-wide default store, the one "mem://" opens.
func Default() *Store { return Named("") }

func validateURL(u *url.URL) error {
	return driver.ValidateURL(u, Scheme)
}

// svc returns the service entry, creating it. Callers hold s.mu.
func (s *Store) svc(name string) *service {
	sv, ok := s.services[name]
	if !ok {
		sv = &service{instances: map[string]registry.Instance{}, watchers: map[*driver.Watcher]*Registry{}}
		s.services[name] = sv
	}
	return sv
}

func (sv *service) bump() {
	sv.version++
	sv.feed()
}

// feed gives every watcher of the service its current set: one sorted
// snapshot, shared, since driver.Watcher copies what Next returns.
// Callers hold the store's mu.
func (sv *service) feed() {
	if len(sv.watchers) == 0 {
		return
	}
	set, idx := sv.snapshot(), strconv.FormatUint(sv.version, 10)
	for w, owner := range sv.watchers {
		if owner.down == nil {
			w.Set(set, idx)
		}
	}
}

// SetOutage makes the store behave like an unreachable registry while err
// is non-nil: every call fails at once with a *registry.UnavailableError
// that names the store (Name) and wraps registry.ErrUnavailable and err,
// and watchers report it, once per call: each call is a new failure, as
// a registry's that changes kind would be. SetOutage(nil) ends the
// outage. It exists so that clients' handling of registry failures can be
// exercised with the embedded backend.
//
// The error's Cause is read from err as driver.Classify reads a network
// error: a refused connection (syscall.ECONNREFUSED) is CauseRefused, a
// deadline or timeout (os.ErrDeadlineExceeded, context.DeadlineExceeded)
// is CauseNoAnswer, and anything else is CauseUnknown. A
// *registry.UnavailableError is reported as it is, with the call's Op
// (and the store's name if it names none). The store has nothing to wait for, so a
// simulated "no answer" is reported at once, with no Bound.
func (s *Store) SetOutage(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = err
	for _, sv := range s.services {
		if err == nil {
			sv.feed()
			continue
		}
		for w := range sv.watchers {
			w.NewOutage(s.unavailable(fmt.Sprintf("watch %q", w.Service()), err))
		}
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
	watchers  driver.Watchers
	down      error // this client's own outage (SetOutage); guarded by the store's mu
}

var (
	_ registry.Registry      = (*Registry)(nil)
	_ registry.ServiceLister = (*Registry)(nil)
	_ registry.Opener        = (*URLOpener)(nil)
)

// New returns a client of a new, private store.
func New() *Registry { return NewStore().Open() }

// Store returns the store the client uses.
func (r *Registry) Store() *Store { return r.store }

func (r *Registry) check(ctx context.Context, op string) error {
	select {
	case <-r.done:
		return fmt.Errorf("memory: %w", registry.ErrClosed)
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if down := r.downLocked(); down != nil {
		return r.store.unavailable(op, down)
	}
	return nil
}

// downLocked returns the outage this client sees, the store's or its
// own, or nil. Callers hold the store's mu.
func (r *Registry) downLocked() error {
	if r.store.down != nil {
		return r.store.down
	}
	return r.down
}

// SetOutage cuts this client alone off from the store while err is
// non-nil, as a network partition would: its calls fail with a
// *registry.UnavailableError wrapping registry.ErrUnavailable and err,
// with the Cause read from err as Store.SetOutage does, and its watchers
// report it, while other clients of the store go on working.
// SetOutage(nil) ends it. The conformance suite uses it for its outage
// cases.
func (r *Registry) SetOutage(err error) {
	s := r.store
	s.mu.Lock()
	defer s.mu.Unlock()
	r.down = err
	for _, sv := range s.services {
		set, idx := sv.snapshot(), strconv.FormatUint(sv.version, 10)
		for w, owner := range sv.watchers {
			switch {
			case owner != r:
			case err != nil:
				w.NewOutage(s.unavailable(fmt.Sprintf("watch %q", w.Service()), err))
			case s.down == nil:
				w.Set(set, idx)
			}
		}
	}
}

// Register implements registry.Registrar.
func (r *Registry) Register(ctx context.Context, inst registry.Instance) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	return r.do(ctx, "register "+inst.String(), func(s *Store) error {
		sv := s.svc(inst.Service)
		if old, ok := sv.instances[inst.ID]; ok && old.Equal(inst) {
			return nil // keeps the original Registered stamp
		}
		inst = inst.Clone()
		inst.Registered = time.Now()
		sv.instances[inst.ID] = inst
		sv.bump()
		return nil
	})
}

// do runs f under the store's lock, once the client is known to be open
// and reachable.
func (r *Registry) do(ctx context.Context, op string, f func(s *Store) error) error {
	s := r.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := r.check(ctx, op); err != nil {
		return err
	}
	return f(s)
}

// Deregister implements registry.Registrar.
func (r *Registry) Deregister(ctx context.Context, inst registry.Instance) error {
	if err := registry.ValidateService(inst.Service); err != nil {
		return err
	}
	return r.do(ctx, "deregister "+inst.String(), func(s *Store) error {
		sv := s.svc(inst.Service)
		if _, ok := sv.instances[inst.ID]; !ok {
			return nil
		}
		delete(sv.instances, inst.ID)
		sv.bump()
		return nil
	})
}

// Lookup implements registry.Discovery.
func (r *Registry) Lookup(ctx context.Context, service string) ([]registry.Instance, error) {
	if err := registry.ValidateService(service); err != nil {
		return nil, err
	}
	var out []registry.Instance
	err := r.do(ctx, fmt.Sprintf("lookup %q", service), func(s *Store) error {
		out = s.svc(service).snapshot()
		return nil
	})
	return out, err
}

// snapshot copies the instances, sorted. Callers hold the store's mu.
func (sv *service) snapshot() []registry.Instance {
	out := make([]registry.Instance, 0, len(sv.instances))
	for _, inst := range sv.instances {
		out = append(out, inst.Clone())
	}
	return driver.Normalize(out)
}

// Watch implements registry.Discovery. The watcher is fed by the
// store's changes, under its lock, so the first Next answers at once.
func (r *Registry) Watch(ctx context.Context, service string) (registry.Watcher, error) {
	s := r.store
	return r.watchers.Watch(ctx, "memory", service, func(_ context.Context, w *driver.Watcher) func() {
		s.mu.Lock()
		sv := s.svc(service)
		sv.watchers[w] = r
		if down := r.downLocked(); down != nil {
			w.Fail(s.unavailable(fmt.Sprintf("watch %q", service), down))
		} else {
			w.Set(sv.snapshot(), strconv.FormatUint(sv.version, 10))
		}
		s.mu.Unlock()
		return func() {
			s.mu.Lock()
			delete(s.svc(service).watchers, w)
			s.mu.Unlock()
		}
	})
}

// Close implements registry.Registry: it closes the client's watchers.
// It is idempotent.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() { close(r.done) })
	r.watchers.CloseAll()
	return nil
}

// Services implements registry.ServiceLister.
func (r *Registry) Services(ctx context.Context) ([]string, error) {
	var out []string
	err := r.do(ctx, "services", func(s *Store) error {
		for name, sv := range s.services {
			if len(sv.instances) > 0 {
				out = append(out, name)
			}
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}
