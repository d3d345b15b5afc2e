package multi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// each calls f on every member of ms at once and returns their results
// in ms's order, once all have returned.
func each[T any](ms []*member, f func(m *member) (T, error)) ([]T, []error) {
	out := make([]T, len(ms))
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() { out[i], errs[i] = f(m) })
	}
	wg.Wait()
	return out, errs
}

// failed returns the errors of errs, in order, joined; nil if none.
func failed(errs []error) error { return errors.Join(errs...) }

// union merges member sets listed in order of precedence: sorted by ID,
// one instance per ID, the first member's where two report the same ID.
func union(sets [][]registry.Instance) []registry.Instance {
	var all []registry.Instance
	for _, s := range sets {
		all = append(all, s...)
	}
	return driver.Normalize(all)
}

// Lookup implements registry.Discovery: the union of every read member's
// Lookup, made at once, each within ctx's deadline, else its own bound.
// If any member fails, Lookup fails with the members' errors (each
// naming its registry; errors.As finds the first
// *registry.UnavailableError): a union without that member could lack
// instances that only it holds, and Lookup never answers with less than
// the registry holds.
func (r *Registry) Lookup(ctx context.Context, service string) ([]registry.Instance, error) {
	if err := registry.ValidateService(service); err != nil {
		return nil, err
	}
	op := fmt.Sprintf("lookup %q", service)
	if err := r.closedErr(op); err != nil {
		return nil, err
	}
	sets, errs := each(r.read, func(m *member) ([]registry.Instance, error) { return m.reg.Lookup(ctx, service) })
	if err := failed(errs); err != nil {
		return nil, fmt.Errorf("multi: %s: %w", op, err)
	}
	return union(sets), nil
}

// Services implements registry.ServiceLister: the union of every read
// member's services, sorted. Every read member must be a
// registry.ServiceLister; a failure of any is Services' error.
func (r *Registry) Services(ctx context.Context) ([]string, error) {
	if err := r.closedErr("services"); err != nil {
		return nil, err
	}
	lists, errs := each(r.read, func(m *member) ([]string, error) {
		l, ok := m.reg.(registry.ServiceLister)
		if !ok {
			return nil, fmt.Errorf("%s cannot list its services (%T is no registry.ServiceLister)", m.name, m.reg)
		}
		return l.Services(ctx)
	})
	if err := failed(errs); err != nil {
		return nil, fmt.Errorf("multi: services: %w", err)
	}
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// FieldProblems implements registry.FieldProblemReporter: the problems
// every read member that reports them keeps for service, sorted by ID
// then Field.
func (r *Registry) FieldProblems(service string) []registry.FieldProblem {
	var out []registry.FieldProblem
	for _, m := range r.read {
		if fr, ok := m.reg.(registry.FieldProblemReporter); ok {
			out = append(out, fr.FieldProblems(service)...)
		}
	}
	slices.SortStableFunc(out, func(a, b registry.FieldProblem) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(a.Field, b.Field))
	})
	return out
}

// Watch implements registry.Discovery. The watcher follows a watch of
// every read member, and is a driver.Watcher fed with their union, so
// that the watch contract holds as for any backend. Its index is each
// read member's, in the order listed, numbered from 1: "1=120 2=5531".
// See the package documentation for what an outage of one member does.
// With shadow members (WithShadow), it watches them too and compares
// their union with the read one, without ever feeding them.
func (r *Registry) Watch(ctx context.Context, service string) (registry.Watcher, error) {
	return r.watches.Watch(ctx, "multi", service, func(fctx context.Context, w *driver.Watcher) func() {
		members := append(slices.Clone(r.read), r.shadow...)
		u := &unionFeed{w: w, r: r, service: service, nRead: len(r.read), states: make([]memberState, len(members))}
		var ws []registry.Watcher
		var wg sync.WaitGroup
		for i, m := range members {
			mw, err := m.reg.Watch(fctx, service)
			if err != nil {
				u.update(i, nil, "", fmt.Errorf("%s: %w", m.name, err))
				continue
			}
			ws = append(ws, mw)
			wg.Go(func() { u.follow(fctx, i, mw) })
		}
		return func() {
			for _, mw := range ws {
				mw.Close()
			}
			wg.Wait()
			r.setShadow(service, u, nil)
		}
	})
}

// unionFeed feeds a driver.Watcher with the union of its read members'
// watches, and compares it with its shadow members' union. mu guards
// states; w is fed under it, which never blocks.
type unionFeed struct {
	w       *driver.Watcher
	r       *Registry
	service string
	nRead   int // states[:nRead] are the read members, the rest shadows
	mu      sync.Mutex
	states  []memberState
}

// memberState is what one member's watch last said.
type memberState struct {
	seen   bool // it said something
	hasSet bool // it returned a set at least once
	set    []registry.Instance
	index  string
	err    error // the error of its current outage; nil while it answers
}

// follow feeds member i's watch into the union until ctx ends or the
// member's watcher closes.
func (u *unionFeed) follow(ctx context.Context, i int, mw registry.Watcher) {
	for {
		set, err := mw.Next(ctx)
		if ctx.Err() != nil || errors.Is(err, registry.ErrClosed) {
			return
		}
		idx := ""
		if iw, ok := mw.(registry.IndexedWatcher); ok && err == nil {
			idx = iw.Index()
		}
		u.update(i, set, idx, err)
	}
}

// update records member i's news, feeds the union if i is a read member,
// and compares the unions if there are shadows. The read union is fed:
//
//   - nothing until every read member has said something, so that the
//     first set is never a union without a member that has yet to answer;
//   - while a read member has never returned a set, its error (the union
//     would lack its instances);
//   - a member's error is fed as the union's (an outage is reported like
//     any outage), and its last set is kept in the union;
//   - a member's set is fed as the union with every member's last set,
//     followed by the error of a member still in an outage, so that the
//     caller gets the other members' changes and still knows that the
//     set is partly stale.
func (u *unionFeed) update(i int, set []registry.Instance, index string, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := &u.states[i]
	st.seen = true
	if err != nil {
		st.err = err
	} else {
		st.set, st.index, st.err, st.hasSet = set, index, nil, true
	}
	if i < u.nRead {
		u.feedLocked(err)
	}
	if len(u.states) > u.nRead && err == nil {
		u.compareLocked()
	}
}

// feedLocked feeds the read union after a read member's news, err being
// its error if it reported one. Callers hold mu.
func (u *unionFeed) feedLocked(err error) {
	read := u.states[:u.nRead]
	for _, s := range read {
		if !s.seen {
			return
		}
	}
	for _, s := range read {
		if !s.hasSet {
			u.w.Fail(s.err)
			return
		}
	}
	if err != nil {
		u.w.Fail(err)
		return
	}
	idx := make([]string, len(read))
	for j, s := range read {
		idx[j] = fmt.Sprintf("%d=%s", j+1, s.index)
	}
	u.w.Set(unionOf(read), strings.Join(idx, " "))
	for _, s := range read {
		if s.err != nil {
			u.w.Fail(s.err)
			return
		}
	}
}

// compareLocked compares the read union with the shadow union, once
// every member of both has returned a set. Callers hold mu.
func (u *unionFeed) compareLocked() {
	for _, s := range u.states {
		if !s.hasSet {
			return
		}
	}
	d := Compare(unionOf(u.states[:u.nRead]), unionOf(u.states[u.nRead:]))
	if d == nil {
		d = []Difference{}
	}
	u.r.setShadow(u.service, u, d)
}

// unionOf is the union of the members' last sets, in their order.
func unionOf(states []memberState) []registry.Instance {
	sets := make([][]registry.Instance, len(states))
	for j, s := range states {
		sets[j] = s.set
	}
	return union(sets)
}
