package etcd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/wayfinder-rpc/wayfinder/internal/backoff"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// maxTxnOps keeps batched puts well under etcd's --max-txn-ops (128).
const maxTxnOps = 64

// entry is one instance this Registry keeps registered.
type entry struct {
	inst   registry.Instance
	value  []byte
	gen    uint64 // bumped on every change of value
	synced bool   // value is written under the current lease
	writes int    // successful puts of this entry, for Status
}

// delOp is a pending Deregister. done is closed when the key is deleted
// or when a later Register of the same key supersedes the delete.
type delOp struct{ done chan struct{} }

// LeaseState is a snapshot of the registration side as a whole: the
// shared lease and the instances written under it. Status gives one
// instance's registration in the shape every backend shares.
type LeaseState struct {
	Instances  int              // instances this Registry keeps registered
	Registered int              // of those, how many are written under the live lease
	Lease      clientv3.LeaseID // the live lease, 0 if none
	Err        error            // the keeper's last error; nil after a success
	// Changed is closed at the next change of state.
	Changed <-chan struct{}
}

// Healthy reports whether every instance is written under a live lease.
func (s LeaseState) Healthy() bool { return s.Err == nil && s.Registered == s.Instances }

// LeaseState returns the state of the lease and its registrations. The
// keeper loop that maintains registrations never gives up; LeaseState is
// how to observe it struggle.
func (r *Registry) LeaseState() LeaseState {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := LeaseState{Instances: len(r.entries), Lease: r.lease, Err: r.lastErr, Changed: r.stateCh}
	for _, e := range r.entries {
		if e.synced {
			s.Registered++
		}
	}
	return s
}

// Status implements registry.StatusReporter: inst's registration in the
// registry.RegistrationStatus shape every backend shares. An instance is
// registered while its value is written under the live lease, and
// retrying while the keeper's last attempt failed; etcd has no health
// checks, so Healthy is always true. LeaseState is the lease-level view.
func (r *Registry) Status(inst registry.Instance) registry.RegistrationStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[r.key(inst.Service, inst.ID)]
	if e == nil {
		ch := make(chan struct{}) // never closed: nothing will change
		return registry.RegistrationStatus{State: registry.StateUnknown, Healthy: true, Changed: ch}
	}
	st := registry.RegistrationStatus{Err: r.lastErr, Registrations: e.writes, Healthy: true, Changed: r.stateCh}
	switch {
	case e.synced:
		st.State, st.Err = registry.StateRegistered, nil
	case r.lastErr != nil:
		st.State = registry.StateRetrying
	default:
		st.State = registry.StatePending
	}
	return st
}

// changedLocked wakes everyone waiting on the state. Callers hold mu.
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

// startKeeperLocked starts the keeper on first use, so that a
// discovery-only Registry holds no lease. Callers hold mu.
func (r *Registry) startKeeperLocked() {
	if !r.keeperOn {
		r.keeperOn = true
		r.wg.Go(r.keep)
	}
}

// Register implements registry.Registrar. It returns once the instance is
// written under the Registry's lease. If ctx ends first, it returns an
// error but the instance stays scheduled: the keeper keeps trying until
// Deregister, so a process that starts while etcd is down still appears
// when etcd comes back.
func (r *Registry) Register(ctx context.Context, inst registry.Instance) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	if r.isClosed() {
		return fmt.Errorf("etcd: register %s: %w", inst, registry.ErrClosed)
	}
	inst = inst.Clone()
	inst.Registered = time.Now()
	value, err := encode(inst, r.opts.format)
	if err != nil {
		return fmt.Errorf("etcd: register %s: %w", inst, err)
	}
	key := r.key(inst.Service, inst.ID)
	r.mu.Lock()
	e := r.entries[key]
	// The stamp changes only with the instance: an unchanged instance
	// keeps its value, so neither this call nor the keeper's re-puts
	// after a lost lease or key ever write a different one.
	if e == nil || !e.inst.Equal(inst) {
		if e == nil {
			e = &entry{}
			r.entries[key] = e
		}
		e.inst, e.value, e.synced = inst, value, false
		e.gen++
		r.changedLocked()
	}
	if op := r.deletes[key]; op != nil {
		// A later Register wins over a pending Deregister.
		delete(r.deletes, key)
		close(op.done)
	}
	gen := e.gen
	r.startKeeperLocked()
	r.mu.Unlock()
	r.wake()
	return r.await(ctx, "register "+inst.String(), func() bool {
		cur := r.entries[key]
		return cur != e || cur.gen != gen || cur.synced
	}, nil, "the instance stays scheduled: the keeper writes it once etcd answers, unless Deregister cancels it")
}

// Deregister implements registry.Registrar. It deletes the key, whoever
// wrote it, and the keeper revokes the lease once no instance is left.
func (r *Registry) Deregister(ctx context.Context, inst registry.Instance) error {
	if err := registry.ValidateService(inst.Service); err != nil {
		return err
	}
	if inst.ID == "" || strings.ContainsAny(inst.ID, "/") {
		return &registry.InvalidError{Field: "ID", Reason: fmt.Sprintf("%q is empty or contains '/'", inst.ID)}
	}
	if r.isClosed() {
		return fmt.Errorf("etcd: deregister %s: %w", inst, registry.ErrClosed)
	}
	key := r.key(inst.Service, inst.ID)
	r.mu.Lock()
	if _, ok := r.entries[key]; ok {
		delete(r.entries, key)
		r.changedLocked()
	}
	op := r.deletes[key]
	if op == nil {
		op = &delOp{done: make(chan struct{})}
		r.deletes[key] = op
	}
	r.startKeeperLocked()
	r.mu.Unlock()
	r.wake()
	return r.await(ctx, "deregister "+inst.String(), nil, op.done, "the delete stays pending: the keeper makes it once etcd answers")
}

// await waits until cond holds (checked under mu) or done is closed, for
// the call op, within the caller's deadline, else the timeout. It returns
// at once when every endpoint refuses or is not etcd, or when the
// keeper's last error is one that waiting will not fix (credentials, not
// etcd). Its error ends with pending, what becomes of the request.
func (r *Registry) await(ctx context.Context, op string, cond func() bool, done <-chan struct{}, pending string) error {
	c := r.startCall(ctx, op, r.opts.timeout)
	defer c.end()
	for {
		r.mu.Lock()
		ok := cond != nil && cond()
		ch, lastErr := r.stateCh, r.lastErr
		r.mu.Unlock()
		if ok {
			return nil
		}
		if permanent(lastErr) || classify(lastErr) == registry.CauseNotRegistry {
			// Retrying will not fix credentials or the address; say so
			// now rather than at the deadline. The keeper still retries,
			// in case they change on the server.
			return c.fail(&stillPending{lastErr, pending})
		}
		select {
		case <-done:
			return nil
		case <-ch:
		case <-c.ctx.Done():
			if c.parent.Err() == context.Canceled {
				return fmt.Errorf("etcd: %s: %w; %s", op, context.Canceled, pending)
			}
			err := c.ctx.Err()
			if lastErr != nil {
				err = lastErr
			}
			return c.fail(&stillPending{err, pending})
		case <-r.ctx.Done():
			return fmt.Errorf("etcd: %s: %w", op, registry.ErrClosed)
		}
	}
}

// stillPending is the error of a Register or Deregister that returned
// before etcd answered: it says what becomes of the request.
type stillPending struct {
	err     error
	pending string
}

func (e *stillPending) Error() string { return e.err.Error() + "; " + e.pending }
func (e *stillPending) Unwrap() error { return e.err }

// keeper is the state owned by the keep goroutine.
type keeper struct {
	r      *Registry
	lease  clientv3.LeaseID
	kaCh   <-chan *clientv3.LeaseKeepAliveResponse
	kaStop context.CancelFunc
	own    map[string]context.CancelFunc // service → its own-key watch
}

// keep is the reconcile loop: it makes etcd hold exactly the entries, under
// one lease kept alive by one KeepAlive stream. It never gives up; errors
// are retried with jittered backoff and published in LeaseState.
func (r *Registry) keep() {
	k := &keeper{r: r, own: map[string]context.CancelFunc{}}
	defer k.stopLease()
	defer k.stopOwn(nil)
	bo := newBackoff()
	var retry <-chan time.Time
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.kick:
		case <-retry:
		case _, ok := <-k.kaCh:
			if ok {
				r.stats.keepAlives.Add(1)
				continue
			}
			// The lessor closes the channel when the lease expired or went
			// unanswered for a whole TTL (a frozen process, a partition).
			r.log.Warn("etcd: lease lost; granting a new one and re-registering", "lease", fmt.Sprintf("%x", k.lease))
			k.stopLease()
			k.markAll(nil)
		}
		retry = nil
		err := k.reconcile()
		if r.ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		changed := (err == nil) != (r.lastErr == nil) || r.lease != k.lease
		r.lastErr, r.lease = err, k.lease
		if changed || err == nil {
			r.changedLocked()
		}
		r.mu.Unlock()
		if err != nil {
			d := bo.Next()
			r.log.Warn("etcd: registration failed; retrying", "err", err, "in", d)
			retry = time.After(d)
		} else {
			bo.Reset()
		}
	}
}

func (k *keeper) stopLease() {
	if k.kaStop != nil {
		k.kaStop()
	}
	k.lease, k.kaCh, k.kaStop = 0, nil, nil
}

// markAll marks entries unsynced (those of one service if svc is non-nil).
func (k *keeper) markAll(svc *string) {
	r := k.r
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.entries {
		if svc == nil || e.inst.Service == *svc {
			e.synced = false
		}
	}
	r.changedLocked()
}

// stopOwn stops the own-key watches of services not in keep (all if nil).
func (k *keeper) stopOwn(keep map[string]bool) {
	for svc, cancel := range k.own {
		if !keep[svc] {
			cancel()
			delete(k.own, svc)
		}
	}
}

type pending struct {
	key   string
	e     *entry
	gen   uint64
	value string
}

// reconcile does one pass: deletes, lease, puts, own-key watches.
func (k *keeper) reconcile() error {
	r := k.r
	ctx, cancel := r.opCtx()
	defer cancel()
	cli, err := r.client(ctx)
	if err != nil {
		return err
	}

	r.mu.Lock()
	dels := maps.Clone(r.deletes)
	r.mu.Unlock()
	for _, key := range slices.Sorted(maps.Keys(dels)) {
		if _, err := cli.Delete(ctx, key); err != nil {
			return fmt.Errorf("delete %s: %w", key, err)
		}
		r.mu.Lock()
		if op := r.deletes[key]; op == dels[key] {
			delete(r.deletes, key)
			close(op.done)
		}
		r.mu.Unlock()
	}

	r.mu.Lock()
	n := len(r.entries)
	services := map[string]bool{}
	for _, e := range r.entries {
		services[e.inst.Service] = true
	}
	r.mu.Unlock()
	k.stopOwn(services)
	if n == 0 {
		if k.lease != 0 {
			// Nothing left to keep alive: revoke rather than let the lease
			// linger for a TTL. Failure only delays its expiry.
			if _, err := cli.Revoke(ctx, k.lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
				r.log.Info("etcd: revoke failed; the lease will expire", "lease", fmt.Sprintf("%x", k.lease), "err", err)
			}
			k.stopLease()
		}
		return nil
	}

	if k.lease == 0 {
		resp, err := cli.Grant(ctx, r.ttlSeconds())
		if err != nil {
			return fmt.Errorf("grant lease: %w", err)
		}
		r.stats.grants.Add(1)
		// One KeepAlive stream for the lease of all instances. Its
		// context is the Registry's, not this pass's.
		kaCtx, kaStop := context.WithCancel(r.ctx)
		ch, err := cli.KeepAlive(kaCtx, resp.ID)
		if err != nil {
			kaStop()
			return fmt.Errorf("keep lease alive: %w", err)
		}
		k.lease, k.kaCh, k.kaStop = resp.ID, ch, kaStop
		k.markAll(nil)
	}

	r.mu.Lock()
	var todo []pending
	for key, e := range r.entries {
		if !e.synced {
			todo = append(todo, pending{key, e, e.gen, string(e.value)})
		}
	}
	r.mu.Unlock()
	slices.SortFunc(todo, func(a, b pending) int { return strings.Compare(a.key, b.key) })
	revs := map[string]int64{} // service → revision of its last put
	for batch := range slices.Chunk(todo, maxTxnOps) {
		ops := make([]clientv3.Op, len(batch))
		for i, p := range batch {
			ops[i] = clientv3.OpPut(p.key, p.value, clientv3.WithLease(k.lease))
		}
		resp, err := cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				r.log.Warn("etcd: lease gone; granting a new one", "lease", fmt.Sprintf("%x", k.lease))
				k.stopLease()
			}
			return fmt.Errorf("put: %w", err)
		}
		r.mu.Lock()
		for _, p := range batch {
			if r.entries[p.key] == p.e && p.e.gen == p.gen {
				p.e.synced = true
				p.e.writes++
			}
			revs[p.e.inst.Service] = resp.Header.Revision
		}
		r.changedLocked()
		r.mu.Unlock()
	}

	for svc := range services {
		if _, ok := k.own[svc]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(r.ctx)
		k.own[svc] = cancel
		rev := revs[svc]
		r.wg.Go(func() { k.watchOwn(ctx, cli, svc, rev) })
	}
	return nil
}

// watchOwn watches the service's keys for deletions of this Registry's
// instances (an operator's etcdctl del, a lease revoked elsewhere) and has
// the keeper put them back. It starts after rev, the revision of the put.
func (k *keeper) watchOwn(ctx context.Context, cli *clientv3.Client, svc string, rev int64) {
	r := k.r
	prefix := r.servicePrefix(svc)
	bo := newBackoff()
	for {
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithFilterPut()}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev+1))
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		var err error
		for resp := range cli.Watch(wctx, prefix, opts...) {
			if err = resp.Err(); err != nil {
				break
			}
			if !resp.Created {
				rev = max(rev, resp.Header.Revision)
			}
			k.ownEvents(resp.Events)
			bo.Reset()
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			// Deletions may have been missed: write everything again and
			// follow from now on.
			rev = 0
			k.markAll(&svc)
			r.wake()
			continue
		}
		if !backoff.Sleep(ctx, bo.Next()) {
			return
		}
	}
}

func (k *keeper) ownEvents(evs []*clientv3.Event) {
	r := k.r
	lost := 0
	r.mu.Lock()
	for _, ev := range evs {
		if ev.Type != mvccpb.DELETE {
			continue
		}
		if e := r.entries[string(ev.Kv.Key)]; e != nil && e.synced {
			e.synced = false
			lost++
			r.log.Warn("etcd: own key deleted by someone else; putting it back", "key", string(ev.Kv.Key))
		}
	}
	if lost > 0 {
		r.changedLocked()
	}
	r.mu.Unlock()
	if lost > 0 {
		r.stats.reputs.Add(uint64(lost))
		r.wake()
	}
}

// monitorConn publishes whether the client's connection is failing, so
// that watchers report ErrUnavailable instead of waiting silently while
// clientv3 retries underneath them.
func (r *Registry) monitorConn(cli *clientv3.Client) {
	conn := cli.ActiveConnection()
	st := conn.GetState()
	for {
		var down bool
		switch st {
		case connectivity.TransientFailure, connectivity.Shutdown:
			down = true
		case connectivity.Ready:
			down = false
		default:
			// Idle and Connecting say nothing new: keep the last verdict.
			r.mu.Lock()
			down = r.connDown
			r.mu.Unlock()
		}
		r.log.Debug("etcd: connection state", "state", st.String(), "down", down)
		r.mu.Lock()
		if down != r.connDown {
			r.connDown = down
			close(r.connCh)
			r.connCh = make(chan struct{})
		}
		r.mu.Unlock()
		if !conn.WaitForStateChange(r.ctx, st) {
			return
		}
		st = conn.GetState()
	}
}

// conn returns whether the connection is failing and a channel closed at
// the next change.
func (r *Registry) conn() (bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.connDown, r.connCh
}

// permanent reports whether err is one that retrying with the same
// configuration cannot fix: bad or missing credentials.
func permanent(err error) bool {
	for _, target := range []error{rpctypes.ErrAuthFailed, rpctypes.ErrPermissionDenied, rpctypes.ErrUserEmpty, rpctypes.ErrUserNotFound} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
