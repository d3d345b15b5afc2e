package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
	"github.com/wayfinder-rpc/wayfinder/registry/zookeeper/internal/zk"
)

// watchLoop is what onEvent tells a watch: its service node's children
// changed (all), or the data of some children (dirty).
//
// Lock order: Registry.mu before watchLoop.mu; mu guards all and dirty.
type watchLoop struct {
	mu    sync.Mutex
	all   bool
	dirty map[string]bool
	kick  chan struct{} // 1-slot
}

func (l *watchLoop) notify(child string) {
	l.mu.Lock()
	if child == "" {
		l.all = true
	} else {
		l.dirty[child] = true
	}
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// take returns and clears what changed.
func (l *watchLoop) take() (all bool, dirty map[string]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	all, dirty = l.all, l.dirty
	l.all, l.dirty = false, map[string]bool{}
	return all, dirty
}

// Watch implements registry.Discovery. The watch reads the service's
// children with a children watch and each child with a data watch, and
// reads again only what ZooKeeper says changed (its watches are
// one-shot: each read re-arms the one that fired). Nothing is polled.
// A lost connection is reported by Next as registry.ErrUnavailable, with
// the last good set kept; after it, the watch reads everything again.
func (r *Registry) Watch(ctx context.Context, service string) (registry.Watcher, error) {
	return r.watchers.Watch(ctx, "zookeeper", service, func(fctx context.Context, w *driver.Watcher) func() {
		l := &watchLoop{dirty: map[string]bool{}, kick: make(chan struct{}, 1)}
		sp := r.servicePath(service)
		r.mu.Lock()
		if r.loops[sp] == nil {
			r.loops[sp] = map[*watchLoop]struct{}{}
		}
		r.loops[sp][l] = struct{}{}
		r.mu.Unlock()
		done := make(chan struct{})
		if !r.goCall(func() {
			defer close(done)
			r.runWatch(fctx, w, service, l)
		}) {
			close(done)
		}
		return func() {
			<-done
			r.mu.Lock()
			delete(r.loops[sp], l)
			if len(r.loops[sp]) == 0 {
				delete(r.loops, sp)
			}
			r.mu.Unlock()
		}
	}, driver.ReportTo(r.problems))
}

// watchState is what a watch keeps between reads.
type watchState struct {
	session   int64 // the session its watches were set under
	armed     bool  // a children watch is set
	pzxid     int64
	children  []string
	instances map[string]cachedNode // by child name
}

type cachedNode struct {
	inst  registry.Instance
	ok    bool // it decoded
	mzxid int64
}

func (r *Registry) runWatch(ctx context.Context, w *driver.Watcher, service string, l *watchLoop) {
	op := fmt.Sprintf("watch %q", service)
	st := &watchState{instances: map[string]cachedNode{}}
	bo := newBackoff()
	for {
		if ctx.Err() != nil {
			return
		}
		insts, index, err := r.readService(ctx, op, service, l, st)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.Fail(err)
			*st = watchState{instances: map[string]cachedNode{}} // read everything after the outage
			_, changed := r.connState()
			t := time.NewTimer(bo.Next())
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case <-changed:
			case <-l.kick:
			}
			t.Stop()
			continue
		}
		bo.Reset()
		w.Set(insts, index)
		// Wait for a change, or for the session to go.
		for {
			live, changed := r.connState()
			if !live {
				w.Fail(r.lostErr(op))
				*st = watchState{instances: map[string]cachedNode{}}
				r.mu.Lock()
				r.stats.relists++
				r.mu.Unlock()
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-l.kick:
			case <-changed:
				continue
			}
			break
		}
	}
}

// lostErr is the error of a watch whose session is not live.
func (r *Registry) lostErr(op string) error {
	if _, refused := r.dial.refused(); refused != nil {
		return &registry.UnavailableError{Registry: r.name, Op: op, Cause: registry.CauseRefused, Err: refused}
	}
	r.mu.Lock()
	state := r.state
	r.mu.Unlock()
	return &registry.UnavailableError{Registry: r.name, Op: op, Cause: registry.CauseNoAnswer,
		Err: fmt.Errorf("connection to ZooKeeper lost (%v)", state)}
}

// readService brings st up to date and returns the set and its index:
// the largest of the service node's pzxid and its children's mzxid.
func (r *Registry) readService(ctx context.Context, op, service string, l *watchLoop, st *watchState) ([]registry.Instance, string, error) {
	sp := r.servicePath(service)
	r.mu.Lock()
	sess := r.liveSessionLocked()
	r.mu.Unlock()
	if sess == 0 || sess != st.session {
		*st = watchState{session: sess, instances: map[string]cachedNode{}}
	}
	all, dirty := l.take()
	if all {
		st.armed = false
	}

	rctx, cancel := context.WithTimeout(ctx, r.opts.timeout)
	defer cancel()
	for {
		insts, index, gone, err := r.readOnce(rctx, op, sp, service, st, dirty)
		if !gone {
			return insts, index, err
		}
		// A child went between the listing and its read: list again, so
		// that the index is the listing's that saw it go.
		st.armed = false
	}
}

func (r *Registry) readOnce(rctx context.Context, op, sp, service string, st *watchState, dirty map[string]bool) (_ []registry.Instance, _ string, gone bool, _ error) {
	if !st.armed {
		var (
			children []string
			stat     *zk.Stat
		)
		err := r.call(rctx, op, func(c *zk.Conn) (err error) {
			children, stat, _, err = c.ChildrenW(sp)
			return err
		})
		if errors.Is(err, zk.ErrNoNode) {
			// No service node yet: an existence watch says when it comes.
			var exists bool
			err = r.call(rctx, op, func(c *zk.Conn) (err error) {
				exists, _, _, err = c.ExistsW(sp)
				return err
			})
			if err != nil {
				return nil, "", false, r.nodeErr(op, err)
			}
			if exists {
				return nil, "", true, nil // created meanwhile: list it
			}
			st.children, st.pzxid, st.instances = nil, 0, map[string]cachedNode{}
			st.armed = true
			return []registry.Instance{}, "0", false, nil
		}
		if err != nil {
			return nil, "", false, r.nodeErr(op, err)
		}
		st.children, st.pzxid, st.armed = children, stat.Pzxid, true
	}
	keep := make(map[string]cachedNode, len(st.children))
	for _, child := range st.children {
		cn, ok := st.instances[child]
		if !ok || dirty[child] {
			var (
				data []byte
				stat *zk.Stat
			)
			err := r.call(rctx, op, func(c *zk.Conn) (err error) {
				data, stat, _, err = c.GetW(path.Join(sp, child))
				return err
			})
			if errors.Is(err, zk.ErrNoNode) {
				return nil, "", true, nil
			}
			if err != nil {
				return nil, "", false, r.nodeErr(op, err)
			}
			cn = cachedNode{mzxid: stat.Mzxid}
			cn.inst, cn.ok = r.decodeNode(service, child, data)
		}
		keep[child] = cn
	}
	st.instances = keep
	index := st.pzxid
	insts := make([]registry.Instance, 0, len(keep))
	for _, cn := range keep {
		index = max(index, cn.mzxid)
		if cn.ok {
			insts = append(insts, cn.inst)
		}
	}
	return insts, strconv.FormatInt(index, 10), false, nil
}

// decodeNode decodes a node's data, logging and counting one that does
// not decode and reporting field problems.
func (r *Registry) decodeNode(service, id string, data []byte) (registry.Instance, bool) {
	inst, problems, err := decode(service, id, data)
	if err != nil {
		r.mu.Lock()
		r.stats.skipped++
		r.mu.Unlock()
		r.log.Warn("zookeeper: skipping a node that is not an instance", "node", r.nodePath(service, id), "err", err)
		return registry.Instance{}, false
	}
	r.problems.Observe(service, id, problems)
	return inst, true
}

// Lookup implements registry.Discovery, bounded by ctx's deadline, else
// by the timeout.
func (r *Registry) Lookup(ctx context.Context, service string) ([]registry.Instance, error) {
	if err := registry.ValidateService(service); err != nil {
		return nil, err
	}
	op := fmt.Sprintf("lookup %q", service)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.opts.timeout)
		defer cancel()
	}
	sp := r.servicePath(service)
	var children []string
	err := r.call(ctx, op, func(c *zk.Conn) (err error) {
		children, _, err = c.Children(sp)
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return []registry.Instance{}, nil
	}
	if err != nil {
		return nil, r.nodeErr(op, err)
	}
	insts := make([]registry.Instance, 0, len(children))
	for _, child := range children {
		var data []byte
		err := r.call(ctx, op, func(c *zk.Conn) (err error) {
			data, _, err = c.Get(path.Join(sp, child))
			return err
		})
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return nil, r.nodeErr(op, err)
		}
		if inst, ok := r.decodeNode(service, child, data); ok {
			insts = append(insts, inst)
		}
	}
	return driver.Normalize(insts), nil
}

// Services implements registry.ServiceLister: the children of the root
// that have children, sorted.
func (r *Registry) Services(ctx context.Context) ([]string, error) {
	op := "services"
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.opts.timeout)
		defer cancel()
	}
	var names []string
	err := r.call(ctx, op, func(c *zk.Conn) (err error) {
		names, _, err = c.Children(r.opts.root)
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return []string{}, nil
	}
	if err != nil {
		return nil, r.nodeErr(op, err)
	}
	out := []string{}
	for _, name := range names {
		if registry.ValidateService(name) != nil {
			continue
		}
		var stat *zk.Stat
		err := r.call(ctx, op, func(c *zk.Conn) (err error) {
			_, stat, err = c.Exists(path.Join(r.opts.root, name))
			return err
		})
		if err != nil {
			return nil, r.nodeErr(op, err)
		}
		if stat != nil && stat.NumChildren > 0 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// FieldProblems implements registry.FieldProblemReporter.
func (r *Registry) FieldProblems(service string) []registry.FieldProblem {
	return r.problems.FieldProblems(service)
}
