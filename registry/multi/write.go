package multi

import (
	"context"
	"errors"
	"fmt"

	"github.com/wayfinder-rpc/wayfinder/internal/backoff"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// want is what the Registry keeps in its write members for one instance:
// registered (with health, for members that take it) or deregistered,
// and where each write member stands with it. A deregistered want is
// dropped once every member has done it.
type want struct {
	key      string
	inst     registry.Instance
	health   registry.HealthFunc // nil: plain Register
	register bool
	gen      uint64 // bumped on every change of what is wanted
	members  []memberWrite
}

// memberWrite is one write member's state for a want.
type memberWrite struct {
	// StatePending, StateRegistered (for a deregistration: done) or
	// StateRetrying.
	state  registry.RegistrationState
	err    error
	writes int    // successful registrations, for RegistrationStatus.Registrations
	ticket uint64 // attempts started
	done   uint64 // the latest attempt whose result was recorded
}

func key(inst registry.Instance) string { return inst.Service + "\x00" + inst.ID }

// notifyLocked closes and replaces changed. Callers hold mu.
func (r *Registry) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Register implements registry.Registrar: it registers inst in every
// write member at once, each within ctx's deadline, else its own bound,
// so that a slow or unreachable member holds up none of the others. It
// returns nil once every member holds inst. Otherwise it returns the
// failed members' errors, joined (each names its registry; errors.As
// finds the first *registry.UnavailableError), and keeps retrying each
// failed member in the background, with backoff, until it succeeds, a
// Deregister of inst, or Close; the members that succeeded keep inst.
// Status and MemberStatus say where each member stands.
func (r *Registry) Register(ctx context.Context, inst registry.Instance) error {
	return r.register(ctx, inst, nil)
}

// RegisterWithHealth implements registry.HealthRegistrar: Register, with
// health given to each write member that is a registry.HealthRegistrar
// (Consul's TTL checks); the others register as with Register.
func (r *Registry) RegisterWithHealth(ctx context.Context, inst registry.Instance, health registry.HealthFunc) error {
	return r.register(ctx, inst, health)
}

func (r *Registry) register(ctx context.Context, inst registry.Instance, health registry.HealthFunc) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	op := "register " + inst.String()
	if err := r.closedErr(op); err != nil {
		return err
	}
	if len(r.write) == 0 {
		return fmt.Errorf("multi: %s: %w", op, ErrReadOnly)
	}
	return r.apply(ctx, op, &want{key: key(inst), inst: inst.Clone(), health: health, register: true})
}

// Deregister implements registry.Registrar: it withdraws inst from every
// write member at once, as Register writes, and cancels the background
// retries of its registration. It returns nil once every member has
// withdrawn it; otherwise the failed members' errors, and the withdrawal
// is retried in the background until it succeeds, a new Register, or
// Close. It is idempotent.
func (r *Registry) Deregister(ctx context.Context, inst registry.Instance) error {
	if err := registry.ValidateService(inst.Service); err != nil {
		return err
	}
	op := "deregister " + inst.String()
	if err := r.closedErr(op); err != nil {
		return err
	}
	if len(r.write) == 0 {
		return fmt.Errorf("multi: %s: %w", op, ErrReadOnly)
	}
	return r.apply(ctx, op, &want{key: key(inst), inst: inst.Clone()})
}

// apply makes nw what is wanted for its instance, writes it to every
// write member at once, and returns their errors.
func (r *Registry) apply(ctx context.Context, op string, nw *want) error {
	r.mu.Lock()
	old := r.wants[nw.key]
	if old != nil && old.register == nw.register && old.inst.Equal(nw.inst) && (old.health == nil) == (nw.health == nil) {
		old.health = nw.health
		nw = old // the same again: keep the members' states
	} else {
		nw.members = make([]memberWrite, len(r.write))
		if old != nil {
			nw.gen = old.gen + 1
			for i := range nw.members {
				nw.members[i].writes = old.members[i].writes
				nw.members[i].ticket = old.members[i].ticket
				nw.members[i].done = old.members[i].done
			}
		}
		for i := range nw.members {
			nw.members[i].state = registry.StatePending
		}
		r.wants[nw.key] = nw
		r.notifyLocked()
	}
	gen := nw.gen
	r.mu.Unlock()

	_, errs := each(r.write, func(m *member) (struct{}, error) {
		return struct{}{}, r.attempt(ctx, m, nw, gen)
	})
	if err := failed(errs); err != nil {
		return fmt.Errorf("multi: %s: %w (retrying the failed members in the background)", op, err)
	}
	return nil
}

// attempt writes w (as of gen) to m once, within ctx, records the
// result, and wakes m's retrier if it failed. The member's error names
// the member.
func (r *Registry) attempt(ctx context.Context, m *member, w *want, gen uint64) error {
	slot := m.acquire(w.key)
	defer m.release(w.key)
	select {
	case slot <- struct{}{}:
	case <-ctx.Done():
		err := fmt.Errorf("%s: %w", m.name, ctx.Err())
		r.record(m, w, gen, 0, err)
		return err
	}
	r.mu.Lock()
	if r.wants[w.key] != w || w.gen != gen {
		r.mu.Unlock()
		<-slot
		return nil // superseded: the newer call or retry writes
	}
	ms := &w.members[m.pos]
	ms.ticket++
	ticket := ms.ticket
	inst, health, reg := w.inst, w.health, w.register
	r.mu.Unlock()

	var err error
	switch hr, ok := m.reg.(registry.HealthRegistrar); {
	case !reg:
		err = m.reg.Deregister(ctx, inst)
	case health != nil && ok:
		err = hr.RegisterWithHealth(ctx, inst, health)
	default:
		err = m.reg.Register(ctx, inst)
	}
	<-slot
	if err != nil && !errors.Is(err, registry.ErrInvalidInstance) {
		err = named(m, err)
	}
	r.record(m, w, gen, ticket, err)
	return err
}

// named prefixes err with the member's name unless it names it already
// (a *registry.UnavailableError does).
func named(m *member, err error) error {
	var ue *registry.UnavailableError
	if errors.As(err, &ue) {
		return err
	}
	return fmt.Errorf("%s: %w", m.name, err)
}

// acquire returns the 1-slot semaphore of the instance key on m, counted
// as used until release.
func (m *member) acquire(key string) chan struct{} {
	m.slotsMu.Lock()
	defer m.slotsMu.Unlock()
	s, ok := m.slots[key]
	if !ok {
		s = &slot{sem: make(chan struct{}, 1)}
		m.slots[key] = s
	}
	s.users++
	return s.sem
}

// release undoes acquire, and forgets the semaphore once nobody uses it
// (it is then empty: every user took and gave back its token, or never
// took one).
func (m *member) release(key string) {
	m.slotsMu.Lock()
	defer m.slotsMu.Unlock()
	if s := m.slots[key]; s != nil {
		if s.users--; s.users == 0 {
			delete(m.slots, key)
		}
	}
}

// record stores the result of attempt ticket of w (as of gen) on m,
// unless w changed since or a later attempt was recorded. A failure
// wakes m's retrier; a finished deregistration on every member drops w.
func (r *Registry) record(m *member, w *want, gen, ticket uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wants[w.key] != w || w.gen != gen {
		return
	}
	ms := &w.members[m.pos]
	if ticket != 0 && ticket <= ms.done {
		return
	}
	if ticket != 0 {
		ms.done = ticket
	}
	if err == nil {
		if w.register && ms.state != registry.StateRegistered {
			ms.writes++
		}
		ms.state, ms.err = registry.StateRegistered, nil
	} else {
		ms.state, ms.err = registry.StateRetrying, err
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
	if !w.register {
		all := true
		for _, s := range w.members {
			all = all && s.state == registry.StateRegistered
		}
		if all {
			delete(r.wants, w.key)
		}
	}
	r.notifyLocked()
}

// retry is the background retrier of write member m: woken by a failed
// write, it retries every write of m in StateRetrying at once, each
// within opts.retryTimeout, then with backoff between rounds while any
// still fails, until Close.
func (r *Registry) retry(m *member) {
	b := backoff.Backoff{Base: r.opts.retryBase, Max: r.opts.retryMax}
	failing := false
	for {
		if failing {
			if !backoff.Sleep(r.ctx, b.Next()) {
				return
			}
		} else {
			select {
			case <-m.kick:
			case <-r.ctx.Done():
				return
			}
		}
		type job struct {
			w   *want
			gen uint64
		}
		var jobs []job
		r.mu.Lock()
		for _, w := range r.wants {
			if w.members[m.pos].state == registry.StateRetrying {
				jobs = append(jobs, job{w, w.gen})
			}
		}
		r.mu.Unlock()
		failing = false
		for _, j := range jobs {
			ctx, cancel := context.WithTimeout(r.ctx, r.opts.retryTimeout)
			err := r.attempt(ctx, m, j.w, j.gen)
			cancel()
			if r.ctx.Err() != nil {
				return
			}
			if err != nil {
				failing = true
				r.opts.log.Debug("multi: write member still failing; retrying", "member", m.name, "instance", j.w.inst.String(), "err", err)
			}
		}
		if !failing && b.Failures() > 0 {
			r.opts.log.Info("multi: write member caught up after failing", "member", m.name, "rounds", b.Failures())
			b.Reset()
		}
	}
}

// MemberStatus is one write member's registration of an instance.
type MemberStatus struct {
	Registry string // the member's name, its redacted URL
	registry.RegistrationStatus
}

// Status implements registry.StatusReporter: inst's registration over
// every write member. It is registered when every member holds it
// (and each member that reports a status of its own says so), retrying
// while any member's last write failed, pending while any has not
// finished its first, and unknown if inst is not registered through this
// Registry. Err is the first failing member's error; Registrations the
// most any member counts; Healthy whether every member says so. Changed
// is closed at the next change of multi's own records (a write, a
// retry); a change that a member makes on its own (an expired lease
// written again) shows in MemberStatus, whose statuses carry each
// member's Changed.
func (r *Registry) Status(inst registry.Instance) registry.RegistrationStatus {
	ms := r.MemberStatus(inst)
	r.mu.Lock()
	ch := r.changed
	r.mu.Unlock()
	out := registry.RegistrationStatus{State: registry.StateUnknown, Healthy: true, Changed: ch}
	if len(ms) == 0 {
		return out
	}
	rank := map[registry.RegistrationState]int{registry.StateRegistered: 1, registry.StatePending: 2, registry.StateRetrying: 3, registry.StateUnknown: 4}
	worst := registry.StateRegistered
	for _, s := range ms {
		if rank[s.State] > rank[worst] {
			worst = s.State
		}
		if out.Err == nil {
			out.Err = s.Err
		}
		out.Registrations = max(out.Registrations, s.Registrations)
		out.Healthy = out.Healthy && s.Healthy
	}
	if worst == registry.StateUnknown {
		worst = registry.StatePending // a member lost track of it: multi has it
	}
	out.State = worst
	return out
}

// MemberStatus returns inst's registration in each write member, in the
// order listed, or nil if inst is not registered through this Registry.
// A member's state is multi's own record of its writes, refined by the
// member's own registry.StatusReporter once multi's last write succeeded.
func (r *Registry) MemberStatus(inst registry.Instance) []MemberStatus {
	r.mu.Lock()
	w := r.wants[key(inst)]
	if w == nil || !w.register {
		r.mu.Unlock()
		return nil
	}
	mine := make([]memberWrite, len(w.members))
	copy(mine, w.members)
	ch := r.changed
	r.mu.Unlock()
	out := make([]MemberStatus, len(r.write))
	for i, m := range r.write {
		s := registry.RegistrationStatus{State: mine[i].state, Err: mine[i].err, Registrations: mine[i].writes, Healthy: true, Changed: ch}
		if sr, ok := m.reg.(registry.StatusReporter); ok && s.State == registry.StateRegistered {
			s = sr.Status(inst)
		}
		out[i] = MemberStatus{Registry: m.name, RegistrationStatus: s}
	}
	return out
}
