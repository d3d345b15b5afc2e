package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	"github.com/wayfinder-rpc/wayfinder/registry/zookeeper/internal/zk"
)

// entry is one instance this Registry keeps registered.
type entry struct {
	inst    registry.Instance
	data    []byte
	gen     uint64 // bumped on every change of data
	written uint64 // the gen last written
	session int64  // the session it was written under; 0: to write
	writes  int    // successful writes, for Status
}

func (e *entry) synced(session int64) bool {
	return session != 0 && e.session == session && e.written == e.gen
}

// delOp is a pending Deregister; done is closed when the node is gone or
// a later Register supersedes the delete.
type delOp struct{ done chan struct{} }

type stats struct {
	writes, rewrites, sessions, skipped, relists uint64
}

// Stats counts background events since the Registry was created.
type Stats struct {
	Writes        uint64 // instance nodes written (created or updated)
	Rewrites      uint64 // own nodes written again after someone else deleted them
	Sessions      uint64 // sessions the keeper wrote under: 1 + expiries, while registered
	SkippedValues uint64 // nodes that did not decode, per reader
	Relists       uint64 // full re-reads by watchers after an outage
	FieldProblems uint64 // optional fields dropped from kept instances
}

// Stats returns the counters.
func (r *Registry) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{
		Writes: r.stats.writes, Rewrites: r.stats.rewrites, Sessions: r.stats.sessions,
		SkippedValues: r.stats.skipped, Relists: r.stats.relists, FieldProblems: r.problems.Count(),
	}
}

// Status implements registry.StatusReporter: an instance is registered
// while its node is written under the live session, and retrying while
// the keeper's last attempt failed (the session was lost, or the server
// refused the write). ZooKeeper has no health checks: Healthy is always
// true.
func (r *Registry) Status(inst registry.Instance) registry.RegistrationStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[r.nodePath(inst.Service, inst.ID)]
	if e == nil {
		return registry.RegistrationStatus{State: registry.StateUnknown, Healthy: true, Changed: make(chan struct{})}
	}
	st := registry.RegistrationStatus{Err: r.lastErr, Registrations: e.writes, Healthy: true, Changed: r.stateCh}
	switch {
	case e.synced(r.liveSessionLocked()):
		st.State, st.Err = registry.StateRegistered, nil
	case r.lastErr != nil:
		st.State = registry.StateRetrying
	default:
		st.State = registry.StatePending
	}
	return st
}

func (r *Registry) liveSessionLocked() int64 {
	if r.state != zk.StateHasSession {
		return 0
	}
	return r.session
}

func (r *Registry) changedLocked() {
	close(r.stateCh)
	r.stateCh = make(chan struct{})
}

func (r *Registry) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Register implements registry.Registrar: it writes an ephemeral node
// <root>/<service>/<id> under the Registry's session, and returns once
// it is written. If it returns an error first, the instance stays
// scheduled: the keeper writes it when ZooKeeper answers, and writes it
// again after a session expiry or someone else's delete, until
// Deregister.
func (r *Registry) Register(ctx context.Context, inst registry.Instance) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	op := fmt.Sprintf("register %q", inst.Service+"/"+inst.ID)
	if r.isClosed() {
		return fmt.Errorf("zookeeper: %s: %w", op, registry.ErrClosed)
	}
	inst = inst.Clone()
	inst.Registered = time.Now()
	p := r.nodePath(inst.Service, inst.ID)
	r.mu.Lock()
	e := r.entries[p]
	if e == nil || !e.inst.Equal(inst) {
		// The stamp changes only with the instance.
		if e != nil {
			inst.Registered = e.inst.Registered
			if !e.inst.Equal(inst) {
				inst.Registered = time.Now()
			}
		}
		data, err := encode(inst)
		if err != nil {
			r.mu.Unlock()
			return fmt.Errorf("zookeeper: %s: %w", op, err)
		}
		if e == nil {
			e = &entry{}
			r.entries[p] = e
		}
		if !bytesEqual(e.data, data) {
			e.inst, e.data = inst, data
			e.gen++
		}
	}
	if d := r.deletes[p]; d != nil {
		delete(r.deletes, p)
		close(d.done)
	}
	gen := e.gen
	if !r.keeperOn {
		r.keeperOn = true
		r.wg.Go(r.keep)
	}
	r.changedLocked()
	r.mu.Unlock()
	r.wake()
	return r.waitSynced(ctx, op, p, gen)
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// waitSynced waits until the node at p is written at gen or later under
// the live session, bounded like every call.
func (r *Registry) waitSynced(ctx context.Context, op, p string, gen uint64) error {
	bound := r.opts.timeout
	if dl, ok := ctx.Deadline(); ok {
		bound = time.Until(dl)
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, bound)
		defer cancel()
	}
	for {
		r.mu.Lock()
		e := r.entries[p]
		if e == nil {
			r.mu.Unlock()
			return nil // deregistered meanwhile
		}
		done := e.synced(r.liveSessionLocked()) && e.written >= gen
		lastErr, ch := r.lastErr, r.stateCh
		r.mu.Unlock()
		if done {
			return nil
		}
		if lastErr != nil {
			// A refusal or a denial is no reason to wait for the bound.
			if errors.Is(lastErr, registry.ErrPermissionDenied) ||
				driver.Classify(lastErr) == registry.CauseRefused && r.dial.refusedAgain() != nil && r.probe() != nil {
				return r.scheduled(op, lastErr)
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), context.Canceled) {
				return ctx.Err()
			}
			// The keeper's error, when ZooKeeper answered it; otherwise
			// what the bound saw (a refusal, or no answer), not the
			// keeper's note that the session is lost.
			if lastErr != nil && driver.Classify(lastErr) == registry.CauseServer {
				return r.scheduled(op, lastErr)
			}
			return r.scheduled(op, r.ctxErr(ctx, op, bound))
		case <-r.ctx.Done():
			return fmt.Errorf("zookeeper: %s: %w", op, registry.ErrClosed)
		}
	}
}

// scheduled says that a registration failed for now and stays scheduled.
func (r *Registry) scheduled(op string, err error) error {
	var ue *registry.UnavailableError
	if errors.As(err, &ue) {
		c := *ue
		c.Op = op
		c.Err = fmt.Errorf("%w (the instance stays scheduled: it is written when ZooKeeper answers, unless deregistered)", ue.Err)
		return &c
	}
	return fmt.Errorf("zookeeper: %s: %w (the instance stays scheduled)", op, err)
}

// Deregister implements registry.Registrar: it deletes the node. It is
// idempotent. If it returns an error, the delete stays pending and is
// made when ZooKeeper answers (the node goes anyway when the session
// ends).
func (r *Registry) Deregister(ctx context.Context, inst registry.Instance) error {
	op := fmt.Sprintf("deregister %q", inst.Service+"/"+inst.ID)
	if r.isClosed() {
		return fmt.Errorf("zookeeper: %s: %w", op, registry.ErrClosed)
	}
	if err := registry.ValidateService(inst.Service); err != nil {
		return err
	}
	if inst.ID == "" || strings.Contains(inst.ID, "/") {
		return fmt.Errorf("%w: id %q", registry.ErrInvalidInstance, inst.ID)
	}
	p := r.nodePath(inst.Service, inst.ID)
	r.mu.Lock()
	_, had := r.entries[p]
	delete(r.entries, p)
	d := r.deletes[p]
	if d == nil {
		d = &delOp{done: make(chan struct{})}
		r.deletes[p] = d
	}
	r.changedLocked()
	r.mu.Unlock()
	err := r.call(ctx, op, func(c *zk.Conn) error { return c.Delete(p, -1) })
	if err == nil || errors.Is(err, zk.ErrNoNode) {
		r.mu.Lock()
		if r.deletes[p] == d {
			delete(r.deletes, p)
			close(d.done)
		}
		r.mu.Unlock()
		return nil
	}
	if !had {
		// Nothing of ours was there: a pending delete would only touch
		// someone else's node later.
		r.mu.Lock()
		if r.deletes[p] == d {
			delete(r.deletes, p)
			close(d.done)
		}
		r.mu.Unlock()
		return err
	}
	r.mu.Lock()
	if !r.keeperOn {
		r.keeperOn = true
		r.wg.Go(r.keep)
	}
	r.mu.Unlock()
	r.wake()
	return err
}

// keep is the keeper: it makes ZooKeeper hold every entry under the live
// session, and makes the pending deletes. It never gives up: on a
// failure it backs off (jittered, up to 3s) and tries again; a new
// session or a lost node wakes it.
func (r *Registry) keep() {
	bo := newBackoff()
	var lastSession int64
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.kick:
		}
		for {
			err := r.syncOnce(&lastSession)
			r.mu.Lock()
			if (err == nil) != (r.lastErr == nil) || err != nil {
				r.lastErr = err
				r.changedLocked()
			}
			r.mu.Unlock()
			if err == nil {
				bo.Reset()
				break
			}
			r.log.Warn("zookeeper: registration failed; retrying", "err", err)
			// Wait out the backoff, unless a new session or a new
			// registration asks for a try sooner.
			_, changed := r.connState()
			t := time.NewTimer(bo.Next())
			select {
			case <-r.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case <-changed:
			case <-r.kick:
			}
			t.Stop()
		}
	}
}

// syncOnce writes every entry that is not written under the live
// session, and makes the pending deletes.
func (r *Registry) syncOnce(lastSession *int64) error {
	ctx, cancel := context.WithTimeout(r.ctx, r.opts.timeout)
	defer cancel()
	if err := r.ready(ctx, "register"); err != nil {
		return err
	}
	r.mu.Lock()
	sess := r.liveSessionLocked()
	type todo struct {
		p    string
		e    *entry
		data []byte
		gen  uint64
	}
	var writes []todo
	for p, e := range r.entries {
		if !e.synced(sess) {
			writes = append(writes, todo{p, e, e.data, e.gen})
		}
	}
	var deletes []string
	for p := range r.deletes {
		deletes = append(deletes, p)
	}
	r.mu.Unlock()
	if sess == 0 {
		return nil // the session ended meanwhile: a new one wakes the keeper
	}
	if len(writes) > 0 && sess != *lastSession {
		*lastSession = sess
		r.mu.Lock()
		r.stats.sessions++
		r.mu.Unlock()
	}
	slices.SortFunc(writes, func(a, b todo) int { return strings.Compare(a.p, b.p) })
	for _, w := range writes {
		ctx, cancel := context.WithTimeout(r.ctx, r.opts.timeout)
		err := r.write(ctx, w.p, w.data, sess)
		cancel()
		if err != nil {
			return err
		}
		r.mu.Lock()
		if r.entries[w.p] == w.e {
			w.e.session, w.e.written = sess, w.gen
			w.e.writes++
			r.stats.writes++
			r.changedLocked()
		}
		r.mu.Unlock()
	}
	for _, p := range deletes {
		ctx, cancel := context.WithTimeout(r.ctx, r.opts.timeout)
		err := r.call(ctx, "deregister "+p, func(c *zk.Conn) error { return c.Delete(p, -1) })
		cancel()
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		r.mu.Lock()
		if d := r.deletes[p]; d != nil {
			delete(r.deletes, p)
			close(d.done)
		}
		r.mu.Unlock()
	}
	return nil
}

// write makes the ephemeral node p hold data under session sess:
// creating it (and its persistent parents), updating it if this session
// owns it, or replacing one another session left. It then sets an
// existence watch on it, so that a delete by someone else wakes the
// keeper.
func (r *Registry) write(ctx context.Context, p string, data []byte, sess int64) error {
	op := "register " + p
	for attempt := 0; ; attempt++ {
		err := r.call(ctx, op, func(c *zk.Conn) error {
			_, err := c.Create(p, data, zk.FlagEphemeral, r.acl)
			return err
		})
		switch {
		case err == nil:
		case errors.Is(err, zk.ErrNoNode) && attempt < 3:
			if err := r.ensurePath(ctx, path.Dir(p)); err != nil {
				return err
			}
			continue
		case errors.Is(err, zk.ErrNodeExists) && attempt < 3:
			var stat *zk.Stat
			err := r.call(ctx, op, func(c *zk.Conn) (err error) {
				_, stat, err = c.Exists(p)
				return err
			})
			if err != nil {
				return err
			}
			if stat == nil || stat.Czxid == 0 {
				continue // gone meanwhile
			}
			if stat.EphemeralOwner == sess {
				err = r.call(ctx, op, func(c *zk.Conn) error {
					_, err := c.Set(p, data, stat.Version)
					return err
				})
			} else {
				err = r.call(ctx, op, func(c *zk.Conn) error { return c.Delete(p, stat.Version) })
				if err == nil || errors.Is(err, zk.ErrNoNode) {
					continue
				}
			}
			if errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode) {
				continue
			}
			if err != nil {
				return err
			}
		default:
			return r.nodeErr(op, err)
		}
		// The watch's channel is the client library's; the event reaches
		// onEvent, which wakes the keeper.
		_ = r.call(ctx, op, func(c *zk.Conn) error {
			_, _, _, err := c.ExistsW(p)
			return err
		})
		return nil
	}
}

// nodeErr makes a node-level error that a write cannot get past an
// UnavailableError naming the server's answer.
func (r *Registry) nodeErr(op string, err error) error {
	var ue *registry.UnavailableError
	if errors.As(err, &ue) || errors.Is(err, registry.ErrClosed) || errors.Is(err, context.Canceled) {
		return err
	}
	return &registry.UnavailableError{Registry: r.name, Op: op, Cause: registry.CauseServer, Err: err}
}

// ensurePath creates p and its parents as persistent nodes.
func (r *Registry) ensurePath(ctx context.Context, p string) error {
	if p == "/" || p == "" {
		return nil
	}
	err := r.call(ctx, "create "+p, func(c *zk.Conn) error {
		_, err := c.Create(p, nil, 0, r.acl)
		return err
	})
	switch {
	case err == nil, errors.Is(err, zk.ErrNodeExists):
		return nil
	case errors.Is(err, zk.ErrNoNode):
		if err := r.ensurePath(ctx, path.Dir(p)); err != nil {
			return err
		}
		return r.ensurePath(ctx, p)
	}
	return r.nodeErr("create "+p, err)
}
