package etcd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

var (
	errWatchClosed = errors.New("watch channel closed")
	errConnLost    = errors.New("connection to etcd failing")
	errSilent      = errors.New("no answer from etcd")
)

// Lookup implements registry.Discovery.
func (r *Registry) Lookup(ctx context.Context, service string) ([]registry.Instance, error) {
	if err := registry.ValidateService(service); err != nil {
		return nil, err
	}
	c := r.startCall(ctx, fmt.Sprintf("lookup %q", service), r.opts.timeout)
	defer c.end()
	cli, err := r.client(c.ctx)
	if err != nil {
		return nil, c.fail(err)
	}
	resp, err := cli.Get(c.ctx, r.servicePrefix(service), clientv3.WithPrefix())
	if err != nil {
		return nil, c.fail(err)
	}
	set := r.decodeAll(service, resp.Kvs)
	return sorted(set), nil
}

// decodeAll decodes a listing, skipping and reporting bad values.
func (r *Registry) decodeAll(service string, kvs []*mvccpb.KeyValue) map[string]registry.Instance {
	prefix := r.servicePrefix(service)
	set := make(map[string]registry.Instance, len(kvs))
	for _, kv := range kvs {
		r.apply(set, prefix, service, kv)
	}
	return set
}

// apply puts kv's instance into set, or removes its key if the value does
// not decode: a foreign or corrupt value is never an instance, but it
// never hides the others either. A value whose only faults are in
// optional fields is an instance without them, and the faults are
// reported once.
func (r *Registry) apply(set map[string]registry.Instance, prefix, service string, kv *mvccpb.KeyValue) {
	inst, problems, err := decode(prefix, service, kv.Key, kv.Value)
	if err == nil {
		r.problems.Observe(service, inst.ID, problems)
	}
	if err != nil {
		r.stats.skipped.Add(1)
		r.log.Warn("etcd: skipping undecodable value", "key", string(kv.Key), "err", err)
		delete(set, string(kv.Key))
		return
	}
	set[string(kv.Key)] = inst
}

func sorted(set map[string]registry.Instance) []registry.Instance {
	out := make([]registry.Instance, 0, len(set))
	for _, inst := range set {
		out = append(out, inst.Clone())
	}
	return driver.Normalize(out)
}

// Watch implements registry.Discovery. It starts one goroutine that lists
// the service, then follows it with an etcd watch; it does not wait for
// the network.
func (r *Registry) Watch(ctx context.Context, service string) (registry.Watcher, error) {
	return r.watchers.Watch(ctx, Scheme, service, func(ctx context.Context, feed *driver.Watcher) func() {
		w := &watcher{r: r, service: service, prefix: r.servicePrefix(service), feed: feed}
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.run(ctx)
		}()
		return func() { <-done }
	}, driver.ReportTo(r.problems))
}

// watcher follows one service with a list and an etcd watch, and feeds
// what it reads to a driver.Watcher, which keeps the contract.
type watcher struct {
	r       *Registry
	service string
	prefix  string
	feed    *driver.Watcher
}

// op names the watch in errors.
func (w *watcher) op() string { return fmt.Sprintf("watch %q", w.service) }

// publish feeds set, read at revision rev.
func (w *watcher) publish(set map[string]registry.Instance, rev int64) {
	w.feed.Set(sorted(set), strconv.FormatInt(rev, 10))
}

// fail reports an outage, or updates its error; the set is kept.
func (w *watcher) fail(err error) { w.feed.Fail(err) }

// run lists, then watches from the listing's revision + 1, until ctx ends.
//
//   - ErrCompacted: the events since rev are gone; list again at once and
//     publish the new set if it differs.
//   - The connection failing: publish an ErrUnavailable error, wait for the
//     connection (or a backoff), then list again, so that the recovery Next
//     returns is a full read.
//   - Any other end of an established watch (closed channel, no leader):
//     watch again from rev+1 at once. If that watch fails before it is
//     established, handle it like a failing connection.
func (w *watcher) run(ctx context.Context) {
	r := w.r
	bo := newBackoff()
	var (
		set  map[string]registry.Instance
		rev  int64
		list = true
	)
	for ctx.Err() == nil {
		cli, err := r.client(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.fail(r.unavailable(w.op(), 0, err))
			w.pause(ctx, bo.Next())
			continue
		}
		if list {
			// The liveness bound holds for the list too, and it fails at
			// once when every endpoint refuses or is not etcd.
			c := r.startCall(ctx, w.op(), min(r.opts.timeout, r.opts.liveness))
			resp, err := cli.Get(c.ctx, w.prefix, clientv3.WithPrefix())
			err = c.fail(err)
			c.end()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				w.fail(err)
				w.pause(ctx, bo.Next())
				continue
			}
			set, rev, list = r.decodeAll(w.service, resp.Kvs), resp.Header.Revision, false
			w.publish(set, rev)
		}
		established, err := w.follow(ctx, cli, set, &rev)
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, rpctypes.ErrCompacted):
			r.stats.compacted.Add(1)
			r.log.Info("etcd: watch compacted; listing again", "service", w.service, "rev", rev)
			bo.Reset()
		case established && !errors.Is(err, errConnLost) && !errors.Is(err, errSilent):
			// A blip (a member restarting, a leader change): resume.
			r.log.Info("etcd: watch ended; watching again", "service", w.service, "rev", rev, "err", err)
			bo.Reset()
			continue
		case errors.Is(err, errSilent):
			w.fail(r.unavailable(w.op(), r.opts.liveness, err))
			w.pause(ctx, bo.Next())
		default:
			w.fail(r.unavailable(w.op(), 0, err))
			w.pause(ctx, bo.Next())
		}
		r.stats.relists.Add(1)
		list = true
	}
}

// pause sleeps for d, or until a failing connection recovers, so that
// recovery does not wait out a long backoff.
func (w *watcher) pause(ctx context.Context, d time.Duration) {
	down, ch := w.r.conn()
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case <-ctx.Done():
			return
		case <-ch:
			now, next := w.r.conn()
			if down && !now {
				return
			}
			down, ch = now, next
		}
	}
}

// follow applies watch events after *rev to set and publishes it, until
// the watch ends. It reports whether the watch was established (etcd
// confirmed it) and the error that ended it.
//
// The liveness bound (WithUnavailableAfter) is kept here: anything the
// watch receives (its confirmation, events) and any answer to the
// Registry's liveness probe count as hearing from etcd. After half the
// bound of silence, follow has the Registry probe etcd; after the whole
// bound it ends with errSilent, whatever the connection's state, so that
// Next reports the outage even while gRPC still sees the connection as
// Ready (a frozen member) or Connecting (a stalled network).
func (w *watcher) follow(ctx context.Context, cli *clientv3.Client, set map[string]registry.Instance, rev *int64) (bool, error) {
	r := w.r
	bound := r.opts.liveness
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	heard := time.Now()
	tick := time.NewTicker(bound / 4)
	defer tick.Stop()
	// clientv3's Watch blocks until etcd confirms the watch, which never
	// happens while the connection is down, so it runs aside while this
	// goroutine keeps an eye on the connection.
	startc := make(chan clientv3.WatchChan, 1)
	from := *rev + 1
	go func() {
		startc <- cli.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithCreatedNotify())
	}()
	var wch clientv3.WatchChan
	defer func() {
		cancel()
		if wch == nil {
			<-startc // Watch returns once wctx is cancelled
		}
	}()
	down, connCh := r.conn()
	established := false
	for {
		select {
		case wch = <-startc:
		case <-tick.C:
			if h := r.heard(); h.After(heard) {
				heard = h
			}
			silent := time.Since(heard)
			if silent >= bound {
				return established, fmt.Errorf("%w for %v (bound %v)", errSilent, silent.Round(time.Millisecond), bound)
			}
			if silent >= bound/2 {
				r.probeLiveness(cli)
			}
		case resp, ok := <-wch:
			if !ok {
				return established, errWatchClosed
			}
			heard = time.Now()
			if err := resp.Err(); err != nil {
				return established, err
			}
			if resp.Created {
				established = true
				continue
			}
			for _, ev := range resp.Events {
				switch ev.Type {
				case mvccpb.PUT:
					r.apply(set, w.prefix, w.service, ev.Kv)
				case mvccpb.DELETE:
					delete(set, string(ev.Kv.Key))
				}
			}
			// As clientv3 does: the last event's revision, or the header's
			// for a progress notification.
			if n := len(resp.Events); n > 0 {
				*rev = resp.Events[n-1].Kv.ModRevision
			} else if resp.Header.Revision > *rev {
				*rev = resp.Header.Revision
			}
			w.publish(set, *rev)
		case <-connCh:
			now, next := r.conn()
			if now && !down {
				return established, errConnLost
			}
			down, connCh = now, next
		}
	}
}

// FieldProblems implements registry.FieldProblemReporter.
func (r *Registry) FieldProblems(service string) []registry.FieldProblem {
	return r.problems.FieldProblems(service)
}

// Services implements registry.ServiceLister: the services with at least
// one key under the prefix. It reads keys only, so it is cheap even for
// large registries; a key that is not <prefix>/<service>/<id> with a
// valid service name is ignored here (Lookup reports bad values).
func (r *Registry) Services(ctx context.Context) ([]string, error) {
	c := r.startCall(ctx, "services", r.opts.timeout)
	defer c.end()
	cli, err := r.client(c.ctx)
	if err != nil {
		return nil, c.fail(err)
	}
	root := r.root()
	resp, err := cli.Get(c.ctx, root, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, c.fail(err)
	}
	seen := map[string]bool{}
	for _, kv := range resp.Kvs {
		svc, id, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), root), "/")
		if ok && id != "" && !strings.Contains(id, "/") && registry.ValidateService(svc) == nil {
			seen[svc] = true
		}
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

// heard returns when the liveness probe last had an answer from etcd.
func (r *Registry) heard() time.Time {
	if n := r.lastHeard.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// probeLiveness starts a probe unless one is running: a linearizable
// read of one key (the prefix itself, a single-key range), which needs
// a leader and a quorum, as a watch's progress does. Its answer counts
// as hearing from etcd for every watch of the Registry, so an idle
// Registry costs one read per half bound, not one per watch. (etcd
// answers progress requests only for watches at or below its current
// revision, and an idle watch is one revision ahead, so progress
// requests cannot serve here.)
func (r *Registry) probeLiveness(cli *clientv3.Client) {
	if !r.probing.CompareAndSwap(false, true) {
		return
	}
	r.wg.Go(func() {
		defer r.probing.Store(false)
		ctx, cancel := context.WithTimeout(r.ctx, r.opts.liveness/2)
		defer cancel()
		if _, err := cli.Get(ctx, r.opts.prefix, clientv3.WithCountOnly()); err == nil {
			r.lastHeard.Store(time.Now().UnixNano())
		}
	})
}
