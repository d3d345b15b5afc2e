package driver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Watcher is the one implementation of registry.Watcher and
// registry.IndexedWatcher. A backend's Watch returns one, made with
// NewWatcher, and feeds it from its own goroutines with Set and Fail; the
// contract lives here, not in the backend:
//
//   - the first Next returns the first set or error the backend feeds,
//     as soon as it is fed;
//   - a set equal to the one Next last returned is not returned again;
//   - an error never comes as an empty set, and the last set is kept;
//   - one error is returned per outage: Fail calls with no Set between
//     them are one outage, whose error text is the latest;
//   - after an error, the next set is returned even if it is unchanged,
//     so the caller sees the recovery;
//   - sets are sorted by ID, with one instance per ID, and Next returns
//     copies the caller may change;
//   - Index is the index of the set Next last returned;
//   - after Close, Next returns an error wrapping registry.ErrClosed;
//     Close unblocks a pending Next and may be called concurrently and
//     more than once.
//
// Set and Fail never block on the consumer: Next sees the latest state,
// so a slow caller skips intermediate sets but never an outage.
//
// mu guards the fields below it; Set, Fail, Next and Close take it only
// for bookkeeping, never while calling out.
type Watcher struct {
	service string
	name    string // "consul: watch \"hello\"", the prefix of its errors
	stop    func() // the backend's own teardown; called once by Close
	shared  bool   // see SharedSets
	backend string
	report  *FieldReporter // see ReportTo; made on first need if nil

	closeOnce sync.Once
	closed    chan struct{}

	mu     sync.Mutex
	cur    []registry.Instance // latest set fed, sorted, unique IDs
	curIdx string
	setSeq uint64 // seq of the latest Set that changed the state; 0: none yet
	err    error  // the latest error of the current or last outage
	errSeq uint64 // seq of the Fail that started the last outage
	outage bool   // a Fail came after the latest Set
	seq    uint64
	signal chan struct{} // closed and replaced on every event

	// Owned by Next's caller, kept under mu so that Close racing Next
	// stays simple to reason about.
	seenSet, seenErr  uint64
	started, afterErr bool
	last              []registry.Instance

	index atomic.Pointer[string] // curIdx of the set Next last returned
}

var _ registry.IndexedWatcher = (*Watcher)(nil)

// NewWatcher returns a watcher of service for the backend named backend
// ("consul", "etcd"; it prefixes the watcher's own errors). stop, if not
// nil, is called once by the first Close, after Next has been
// unblocked: it cancels the backend's goroutines that feed this watcher
// and waits for them. stop must not call Close.
func NewWatcher(backend, service string, stop func(), opts ...WatcherOption) *Watcher {
	w := &Watcher{
		service: service,
		name:    fmt.Sprintf("%s: watch %q", backend, service),
		stop:    stop,
		backend: backend,
		closed:  make(chan struct{}),
		signal:  make(chan struct{}),
	}
	for _, o := range opts {
		o(w)
	}
	return w
}

// WatcherOption configures a Watcher.
type WatcherOption func(*Watcher)

// SharedSets makes Next return the sets as they were fed, without
// copying them: for a consumer inside Wayfinder that never changes what
// it reads (the resolver, which turns each set into gRPC endpoints), so
// that a set fed to a thousand ClientConns is not copied a thousand times.
func SharedSets() WatcherOption { return func(w *Watcher) { w.shared = true } }

// ReportTo makes Set report the invalid instances it meets to r (the
// backend's FieldReporter, whose problems its FieldProblems method
// returns) rather than to a reporter of the watcher's own that logs to
// slog.Default.
func ReportTo(r *FieldReporter) WatcherOption { return func(w *Watcher) { w.report = r } }

// Set feeds the current full set of instances, read at the registry's
// index (its own notation; "" if it has none). It ends an outage. Set
// takes ownership of insts and may reorder it: the backend must not
// change it afterwards, but may pass the same (sorted) slice to several
// watchers. Where two instances share an ID, the first one in insts is
// kept: a backend that merges several sources (Consul's datacenters)
// lists them in order of preference.
//
// Set refuses invalid instances, so that Next never returns one: an
// instance that registry.Instance.Validate rejects is passed through
// Sanitize; one whose optional fields were at fault is kept with their
// defaults, one whose ID, Service or Address is at fault is dropped, and
// either way the problems are reported as registry.FieldProblems (to the
// ReportTo reporter, else logged once by the watcher). The rest of the
// set is fed as usual: an invalid instance never fails the set, and Set
// never panics on one. A backend that decodes foreign data should still
// Sanitize and report it itself, where it can name the field in its own
// terms and clear a problem once fixed; this is the safety net.
func (w *Watcher) Set(insts []registry.Instance, index string) {
	insts = Normalize(insts)
	w.mu.Lock()
	if w.setSeq > 0 && !w.outage && EqualSets(insts, w.cur) {
		w.mu.Unlock()
		return // a wake-up without a change: its index is not news either
	}
	fixed, problems := refuseInvalid(insts)
	if problems != nil && w.report == nil {
		w.report = NewFieldReporter(w.backend, nil)
	}
	report := w.report
	if problems == nil || w.setSeq == 0 || w.outage || !EqualSets(fixed, w.cur) {
		w.cur, w.curIdx, w.outage = fixed, index, false
		w.seq++
		w.setSeq = w.seq
		w.notifyLocked()
	}
	w.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(problems)) { // logged outside mu
		report.Observe(w.service, id, problems[id])
	}
}

// Fail reports that the registry cannot be read, with err saying why
// (backends wrap registry.ErrUnavailable). The first Fail after a Set (or
// before any) starts an outage, which Next reports once; later ones only
// replace its error. The set is kept.
func (w *Watcher) Fail(err error) {
	if err == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
	if w.outage {
		return
	}
	w.outage = true
	w.seq++
	w.errSeq = w.seq
	w.notifyLocked()
}

// NewOutage is Fail for a backend that knows the registry's failure has
// changed, not merely persisted: it starts a new outage, which Next
// reports, even if one is in progress. The memory store uses it so that
// each SetOutage is seen, as tests of retry handling need.
func (w *Watcher) NewOutage(err error) {
	w.mu.Lock()
	w.outage = false
	w.mu.Unlock()
	w.Fail(err)
}

// refuseInvalid returns insts without invalid instances (sanitized or
// dropped) and their problems by ID, or insts itself and nil if every
// instance is valid. It never changes insts, which may be shared.
func refuseInvalid(insts []registry.Instance) ([]registry.Instance, map[string][]registry.FieldProblem) {
	var (
		out      []registry.Instance
		problems map[string][]registry.FieldProblem
	)
	for i, inst := range insts {
		if inst.Validate() == nil {
			if out != nil {
				out = append(out, inst)
			}
			continue
		}
		if out == nil {
			out = append(make([]registry.Instance, 0, len(insts)), insts[:i]...)
			problems = map[string][]registry.FieldProblem{}
		}
		fixed, ps, err := Sanitize(inst, func(f string) string { return f })
		if err != nil {
			field, reason := "Instance", err.Error()
			var ie *registry.InvalidError
			if errors.As(err, &ie) {
				field, reason = ie.Field, ie.Reason
			}
			ps = append(ps, registry.FieldProblem{Service: inst.Service, ID: inst.ID, Field: field,
				Value: CutValue(invalidValue(inst, field)), Reason: reason + "; instance dropped"})
		} else {
			out = append(out, fixed)
		}
		problems[inst.ID] = append(problems[inst.ID], ps...)
	}
	if out == nil {
		return insts, nil
	}
	return out, problems
}

// invalidValue is the value of a required field of inst, for a problem.
func invalidValue(inst registry.Instance, field string) string {
	switch field {
	case "ID":
		return inst.ID
	case "Service":
		return inst.Service
	case "Address":
		return inst.Address
	}
	return ""
}

func (w *Watcher) notifyLocked() {
	close(w.signal)
	w.signal = make(chan struct{})
}

// Next implements registry.Watcher.
func (w *Watcher) Next(ctx context.Context) ([]registry.Instance, error) {
	for {
		select {
		case <-w.closed:
			return nil, fmt.Errorf("%s: %w", w.name, registry.ErrClosed)
		default:
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		w.mu.Lock()
		wake := w.signal
		// Events are taken in the order they happened: a set fed before
		// an outage is returned before the outage's error.
		if w.setSeq > w.seenSet && (w.errSeq <= w.seenErr || w.setSeq < w.errSeq) {
			w.seenSet = w.setSeq
			if !w.started || w.afterErr || !EqualSets(w.cur, w.last) {
				w.started, w.afterErr, w.last = true, false, w.cur
				idx := w.curIdx
				w.index.Store(&idx)
				out := w.cur
				if !w.shared {
					out = cloneAll(out)
				}
				w.mu.Unlock()
				return out, nil
			}
		}
		if w.errSeq > w.seenErr {
			w.seenErr = w.errSeq
			w.afterErr = true
			err := w.err
			w.mu.Unlock()
			return nil, err
		}
		w.mu.Unlock()
		select {
		case <-wake:
		case <-w.closed:
		case <-ctx.Done():
		}
	}
}

// Index implements registry.IndexedWatcher: the index the backend gave
// with the set Next last returned, or "" before Next has returned one.
func (w *Watcher) Index() string {
	if p := w.index.Load(); p != nil {
		return *p
	}
	return ""
}

// Close implements registry.Watcher. It unblocks Next, then runs the
// backend's stop. It is idempotent and always returns nil; a concurrent
// second Close returns once the first has finished.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		close(w.closed)
		if w.stop != nil {
			w.stop()
		}
	})
	return nil
}

// Service returns the name of the service watched.
func (w *Watcher) Service() string { return w.service }

// Done is closed when Close is first called, for backend goroutines that
// select on it rather than on their own context.
func (w *Watcher) Done() <-chan struct{} { return w.closed }

// Normalize sorts insts by ID and keeps the first instance of each ID,
// the form of every set Lookup and Next return. An ID is unique within a
// service across a registry (registry.Instance.Key); where a backend
// merges several sources, it lists them in order of preference and the
// first wins. An already sorted slice without duplicates is returned as
// it is, so that one snapshot can be fed to many watchers without
// copying; otherwise insts may be reordered. nil becomes an empty set.
func Normalize(insts []registry.Instance) []registry.Instance {
	byID := func(a, b registry.Instance) int { return strings.Compare(a.ID, b.ID) }
	if !slices.IsSortedFunc(insts, byID) {
		slices.SortStableFunc(insts, byID)
	}
	for i := 1; i < len(insts); i++ {
		if insts[i].ID == insts[i-1].ID {
			return slices.CompactFunc(slices.Clone(insts), func(a, b registry.Instance) bool { return a.ID == b.ID })
		}
	}
	if insts == nil {
		insts = []registry.Instance{}
	}
	return insts
}

func cloneAll(in []registry.Instance) []registry.Instance {
	out := make([]registry.Instance, len(in))
	for i, inst := range in {
		out[i] = inst.Clone()
	}
	return out
}
