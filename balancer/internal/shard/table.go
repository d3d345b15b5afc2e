package shard

import (
	"google.golang.org/grpc/attributes"
	gbalancer "google.golang.org/grpc/balancer"
	gresolver "google.golang.org/grpc/resolver"
)

// table is the frame's view of its children, kept in O(1) per change:
// dense lists of every endpoint and of the ready ones, swap-removed, and
// what joined and left since the policy's last Update.
type table struct {
	nextID uint64
	all    []*Endpoint // snapshots; all[i] is allE[i].ep
	allE   []*entry
	ready  []*Endpoint // snapshots of the ready entries; ready[i] is readyE[i].ep
	readyE []*entry
	addrs  map[string]int // first addresses in all, counted

	added   []*entry    // joined since the last update; filtered by gone
	changed []*entry    // endpoint changed since the last update; filtered by gone
	removed []*Endpoint // left since the last update, if not in added
	dirty   bool        // a picker would differ: the policy must be asked
	u       Update
}

// entry is the table's record of one child.
type entry struct {
	ep       *Endpoint              // the current snapshot
	attrs    *attributes.Attributes // those ep was read from
	raw      gbalancer.Picker       // the child's picker, before counting
	allIdx   int
	readyIdx int  // -1 unless ready
	pending  bool // in added
	changed  bool // in changed
	gone     bool // removed
}

func (t *table) init() { t.addrs = map[string]int{} }

// wrapFunc wraps a ready endpoint's picker to count picks on addr.
type wrapFunc func(addr string, p gbalancer.Picker) gbalancer.Picker

// add records a new child with its endpoint; it is IDLE until the child
// reports.
func (t *table) add(rep gresolver.Endpoint) *entry {
	t.nextID++
	ep := FromChild(rep, gbalancer.State{})
	ep.ID = t.nextID
	e := &entry{ep: &ep, attrs: rep.Attributes, allIdx: len(t.all), readyIdx: -1, pending: true}
	t.all = append(t.all, e.ep)
	t.allE = append(t.allE, e)
	t.addrs[ep.Addr]++
	t.added = append(t.added, e)
	t.dirty = true
	return e
}

// setEndpoint records a child's endpoint again (endpointsharding passes
// it at every resolver update); a new snapshot only if what FromChild
// reads from it changed.
func (t *table) setEndpoint(e *entry, rep gresolver.Endpoint, wrap wrapFunc) {
	old := e.ep
	if sameAttrs(rep.Attributes, e.attrs) && len(rep.Addresses) > 0 && rep.Addresses[0].Addr == old.Addr {
		return
	}
	e.attrs = rep.Attributes
	n := FromChild(rep, gbalancer.State{ConnectivityState: old.State, Picker: e.raw})
	if n.Addr == old.Addr && n.Weight == old.Weight && n.Unweighted == old.Unweighted &&
		n.Instance.Equal(old.Instance) && n.Instance.Registered.Equal(old.Instance.Registered) {
		return
	}
	n.ID, n.Data = old.ID, old.Data
	if n.Ready() {
		n.Picker = wrap(n.Addr, e.raw)
	}
	if n.Addr != old.Addr {
		t.dropAddr(old.Addr)
		t.addrs[n.Addr]++
	}
	t.replace(e, clone(&n))
	if !e.pending && !e.changed {
		e.changed = true
		t.changed = append(t.changed, e)
	}
	t.dirty = true
}

// setState records a child's state. A change that neither enters, leaves
// nor happens in the ready set leaves pickers as they are: only the
// table's snapshot (for inspection and the next Update) changes.
func (t *table) setState(e *entry, s gbalancer.State, wrap wrapFunc) {
	was := e.ep.Ready()
	n := *e.ep
	n.State, n.Picker = s.ConnectivityState, s.Picker
	e.raw = s.Picker
	now := n.Ready()
	if now {
		n.Picker = wrap(n.Addr, s.Picker)
	}
	switch {
	case was && now:
		t.replace(e, &n)
	case was:
		t.dropReady(e)
		t.replace(e, &n)
	case now:
		t.replace(e, &n)
		e.readyIdx = len(t.ready)
		t.ready = append(t.ready, e.ep)
		t.readyE = append(t.readyE, e)
	default:
		t.replace(e, &n)
		return
	}
	t.dirty = true
}

// recount rewraps the pickers of the ready endpoints after counting was
// switched.
func (t *table) recount(wrap wrapFunc) {
	for _, e := range t.readyE {
		n := *e.ep
		n.Picker = wrap(n.Addr, e.raw)
		t.replace(e, &n)
	}
	t.dirty = true
}

// remove drops a closed child.
func (t *table) remove(e *entry) {
	if e.gone {
		return
	}
	e.gone = true
	if e.readyIdx >= 0 {
		t.dropReady(e)
	}
	last := len(t.all) - 1
	moved := t.allE[last]
	t.all[e.allIdx], t.allE[e.allIdx] = moved.ep, moved
	moved.allIdx = e.allIdx
	t.all[last], t.allE[last] = nil, nil
	t.all, t.allE = t.all[:last], t.allE[:last]
	t.dropAddr(e.ep.Addr)
	if !e.pending {
		t.removed = append(t.removed, e.ep)
	}
	t.dirty = true
}

// clone copies e to the heap, so that e itself, on the stack, does not
// escape when no copy is made.
func clone(e *Endpoint) *Endpoint {
	c := *e
	return &c
}

func (t *table) hasAddr(addr string) bool { return t.addrs[addr] > 0 }

func (t *table) dropAddr(addr string) {
	if t.addrs[addr] <= 1 {
		delete(t.addrs, addr)
		return
	}
	t.addrs[addr]--
}

// replace makes n e's snapshot, in all and, if e is in it, in ready.
func (t *table) replace(e *entry, n *Endpoint) {
	e.ep = n
	t.all[e.allIdx] = n
	if e.readyIdx >= 0 {
		t.ready[e.readyIdx] = n
	}
}

func (t *table) dropReady(e *entry) {
	last := len(t.ready) - 1
	moved := t.readyE[last]
	t.ready[e.readyIdx], t.readyE[e.readyIdx] = moved.ep, moved
	moved.readyIdx = e.readyIdx
	t.ready[last], t.readyE[last] = nil, nil
	t.ready, t.readyE = t.ready[:last], t.readyE[:last]
	e.readyIdx = -1
}

// update returns what the policy builds from, and starts collecting the
// next one. The slices are valid until the table next changes.
func (t *table) update() *Update {
	t.u.Added = t.u.Added[:0]
	for _, e := range t.added {
		e.pending = false
		if !e.gone {
			t.u.Added = append(t.u.Added, e.ep)
		}
	}
	clear(t.added)
	t.added = t.added[:0]
	t.u.Changed = t.u.Changed[:0]
	for _, e := range t.changed {
		e.changed = false
		if !e.gone {
			t.u.Changed = append(t.u.Changed, e.ep)
		}
	}
	clear(t.changed)
	t.changed = t.changed[:0]
	t.u.Removed = append(t.u.Removed[:0], t.removed...)
	clear(t.removed)
	t.removed = t.removed[:0]
	t.u.All, t.u.Ready = t.all, t.ready
	t.dirty = false
	return &t.u
}

// sameAttrs reports whether two endpoints' attributes are the same
// object, in which case FromChild would read the same from both.
func sameAttrs(a, b *attributes.Attributes) bool { return a == b }
