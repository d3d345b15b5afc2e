package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/wayfinder-rpc/wayfinder/internal/backoff"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

func selector(ref serviceRef) string {
	return labels.Set{discoveryv1.LabelServiceName: ref.name}.String()
}

// Lookup implements registry.Discovery: it reads the Service (for its
// port) and lists all its EndpointSlices.
func (r *Registry) Lookup(ctx context.Context, service string) ([]registry.Instance, error) {
	ref, err := r.ref(service)
	if err != nil {
		return nil, err
	}
	if r.isClosed() {
		return nil, fmt.Errorf("kubernetes: lookup %q: %w", service, registry.ErrClosed)
	}
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	all, _, port, err := r.list(ctx, ref)
	if err != nil {
		return nil, withOp(fmt.Sprintf("lookup %q", service), err)
	}
	insts, _, problems := mergeChecked(service, port, "", views(all), time.Now(), r.aliasesOf(service))
	r.observe(service, insts, problems)
	return driver.Normalize(insts), nil
}

// observe reports the field problems of one read of service: those
// found, and none for the instances read without any.
func (r *Registry) observe(service string, insts []registry.Instance, problems map[string][]registry.FieldProblem) {
	for _, inst := range insts {
		if _, ok := problems[inst.ID]; !ok {
			r.problems.Observe(service, inst.ID, nil)
		}
	}
	for _, id := range sortedKeys(problems) {
		r.problems.Observe(service, id, problems[id])
	}
}

// FieldProblems implements registry.FieldProblemReporter: the problems
// of the endpoints last read of service, such as a weight label that is
// not a number or a version Instance.Validate rejects.
func (r *Registry) FieldProblems(service string) []registry.FieldProblem {
	return r.problems.FieldProblems(service)
}

// Services implements registry.ServiceLister: the Services of the
// Registry's namespace with at least one live endpoint (ready, or
// serving and terminating; a managed endpoint whose registration has not
// expired), by name, sorted. It lists the namespace's EndpointSlices
// once, whatever their port.
func (r *Registry) Services(ctx context.Context) ([]string, error) {
	if r.isClosed() {
		return nil, fmt.Errorf("kubernetes: services: %w", registry.ErrClosed)
	}
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	lctx, lcancel := r.callCtx(ctx)
	defer lcancel()
	l, err := r.slices.EndpointSlices(r.namespace).List(lctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName})
	if err != nil {
		return nil, withOp("services", r.apiError(ctx, "list endpointslices of namespace "+r.namespace, err))
	}
	r.answered()
	now := time.Now()
	seen := map[string]bool{}
	for i := range l.Items {
		v := view(&l.Items[i])
		name := v.s.Labels[discoveryv1.LabelServiceName]
		if seen[name] || !liveAt(v, now) {
			continue
		}
		seen[name] = true
	}
	return sortedKeys(seen), nil
}

// liveAt reports whether v has an endpoint Lookup could return at now,
// whatever its port.
func liveAt(v sliceView, now time.Time) bool {
	if m := v.managed; m != nil && m.TTLSeconds > 0 && !now.Before(m.Renewed.Add(time.Duration(m.TTLSeconds)*time.Second)) {
		return false
	}
	for _, ep := range v.s.Endpoints {
		if len(ep.Addresses) > 0 && classify(ep.Conditions) != excluded {
			return true
		}
	}
	return false
}

// list reads the Service's port and all its slices, and returns them
// with the list's resourceVersion.
func (r *Registry) list(ctx context.Context, ref serviceRef) (map[string]*discoveryv1.EndpointSlice, string, string, error) {
	port, err := r.portName(ctx, ref)
	if err != nil {
		return nil, "", "", err
	}
	lctx, cancel := r.callCtx(ctx)
	defer cancel()
	l, err := r.slices.EndpointSlices(ref.namespace).List(lctx, metav1.ListOptions{LabelSelector: selector(ref)})
	if err != nil {
		return nil, "", "", r.apiError(ctx, fmt.Sprintf("list endpointslices of %s/%s", ref.namespace, ref.name), err)
	}
	r.answered()
	all := make(map[string]*discoveryv1.EndpointSlice, len(l.Items))
	for i := range l.Items {
		all[l.Items[i].Name] = &l.Items[i]
	}
	return all, l.ResourceVersion, port, nil
}

// Watch implements registry.Discovery. It starts one goroutine that
// lists the Service's slices, then follows them with a watch from the
// list's resourceVersion; it does not wait for the network.
func (r *Registry) Watch(ctx context.Context, service string) (registry.Watcher, error) {
	ref, err := r.ref(service)
	if err != nil {
		return nil, err
	}
	return r.watchers.Watch(ctx, Scheme, service, func(ctx context.Context, feed *driver.Watcher) func() {
		w := &watcher{r: r, service: service, ref: ref, feed: feed, nudge: make(chan struct{}, 1)}
		r.mu.Lock()
		if r.active[service] == nil {
			r.active[service] = map[*watcher]struct{}{}
		}
		r.active[service][w] = struct{}{}
		r.mu.Unlock()
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer func() {
				r.mu.Lock()
				delete(r.active[service], w)
				r.mu.Unlock()
			}()
			w.run(ctx)
		}()
		return func() { <-done }
	}, driver.ReportTo(r.problems))
}

// watcher follows one Service's slices and feeds the merged set to a
// driver.Watcher, which keeps the contract. Its fields are owned by run.
type watcher struct {
	r       *Registry
	service string
	ref     serviceRef
	feed    *driver.Watcher

	slices   map[string]sliceView
	port     string
	prevPort string // the port's name before a rename, while slices may still carry it
	rv       string
	expiry   *time.Timer   // the next expiry of a managed endpoint; nil if none
	nudge    chan struct{} // 1 slot: the Registry's aliases changed
}

// publish feeds the merged set, and arms the timer for the next expiry
// of a managed endpoint, if any.
func (w *watcher) publish() {
	insts, next, problems := mergeChecked(w.service, w.port, w.prevPort, w.slices, time.Now(), w.r.aliasesOf(w.service))
	w.r.observe(w.service, insts, problems)
	w.feed.Set(insts, w.rv)
	w.setExpiry(next)
}

// setExpiry arms the expiry timer for next, or disarms it if next is
// zero.
func (w *watcher) setExpiry(next time.Time) {
	if w.expiry != nil {
		w.expiry.Stop()
		w.expiry = nil
	}
	if !next.IsZero() {
		w.expiry = time.NewTimer(time.Until(next))
	}
}

// expired is the expiry timer's channel, or nil.
func (w *watcher) expired() <-chan time.Time {
	if w.expiry == nil {
		return nil
	}
	return w.expiry.C
}

func (w *watcher) fail(err error) {
	w.feed.Fail(withOp(fmt.Sprintf("watch %q", w.service), err))
}

// run lists, then watches from the list's resourceVersion, until ctx
// ends.
//
//   - A watch that lasts until the server's timeout: watch again from the
//     last resourceVersion, which bookmarks keep recent.
//   - A watch that ends early: list again (and publish the difference).
//     client-go turns a connection lost or refused into a watch that
//     simply ends, so only the list can tell an outage from a blip.
//   - 410 Gone (the resourceVersion was compacted away): list again at
//     once and publish the new set if it differs.
//   - Any failure to list or to start a watch: report it (the set is
//     kept), back off, and list again, so that the recovery is a full
//     read.
func (w *watcher) run(ctx context.Context) {
	defer func() {
		if w.expiry != nil {
			w.expiry.Stop()
		}
	}()
	bo := backoff.Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second}
	list, listed := true, false
	for ctx.Err() == nil {
		if list {
			if listed {
				w.r.relists.Add(1)
			}
			listed = true
			all, rv, port, err := w.r.list(ctx, w.ref)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				w.fail(err)
				backoff.Sleep(ctx, bo.Next())
				continue
			}
			w.slices, w.rv, w.port, list = views(all), rv, port, false
			w.publish()
		}
		res, err := w.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			w.fail(err)
			backoff.Sleep(ctx, bo.Next())
			list = true
		case res == watchRelist:
			w.r.opts.logger.Info("kubernetes: the Service's port changed name; listing again", "service", w.service, "was", w.port)
			w.prevPort, list = w.port, true
		case res == watchGone:
			testHookGone()
			w.r.opts.logger.Info("kubernetes: resourceVersion too old; listing again", "service", w.service, "rv", w.rv)
			bo.Reset()
			list = true
		case res == watchEarly:
			// Not a hot loop if the watch keeps ending at once while
			// lists succeed.
			backoff.Sleep(ctx, bo.Next())
			list = true
		default:
			bo.Reset()
		}
	}
}

// Test hooks: the server-side timeout of each watch, in seconds, and a
// call for each 410 Gone. Tests set them before any watch starts.
var (
	watchTimeoutSeconds = func() int64 { return 300 + time.Now().UnixNano()%300 }
	testHookGone        = func() {}
)

type watchEnd int

const (
	watchTimeout watchEnd = iota // the server's timeout: resume
	watchEarly                   // before it, without an error
	watchGone                    // 410 Gone
	watchRelist                  // the Service's port changed name: list again
)

// follow watches the slices from w.rv, applying each event, until the
// watch ends, and says how it ended; err is set if the watch could not
// start or the server reported an error other than 410 Gone.
func (w *watcher) follow(ctx context.Context) (watchEnd, error) {
	what := fmt.Sprintf("watch endpointslices of %s/%s", w.ref.namespace, w.ref.name)
	// The server ends the watch after the timeout; a little randomness
	// spreads the re-watches of many clients, as client-go's reflector
	// does.
	timeout := watchTimeoutSeconds()
	start := time.Now()
	// The watchdog ends a watch whose server says nothing for the
	// liveness bound (a frozen server would otherwise hold it, or the
	// request for it, until its timeout, minutes).
	outer := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer w.r.watchdog(ctx, cancel)()
	silent := func() error {
		if cause := context.Cause(ctx); errors.Is(cause, errSilent) && outer.Err() == nil {
			return w.r.apiError(outer, what, cause)
		}
		return nil
	}
	wi, err := w.r.slices.EndpointSlices(w.ref.namespace).Watch(ctx, metav1.ListOptions{
		LabelSelector:       selector(w.ref),
		ResourceVersion:     w.rv,
		AllowWatchBookmarks: true,
		TimeoutSeconds:      &timeout,
	})
	if err != nil {
		if serr := silent(); serr != nil {
			return watchEarly, serr
		}
		if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
			return watchGone, nil
		}
		return watchEarly, w.r.apiError(outer, what, err)
	}
	defer wi.Stop()
	// Events already waiting are applied before the merge, which reads
	// every endpoint: merging after each event of a burst cost events ×
	// endpoints, and a watcher that fell behind under load fell further
	// behind. dirty says applied events are not yet published; flush
	// publishes them before the watch ends, whatever ends it.
	dirty := false
	flush := func() {
		if dirty {
			dirty = false
			w.publish()
		}
	}
	defer flush()
	for {
		var ev watch.Event
		var ok bool
		if dirty {
			select {
			case ev, ok = <-wi.ResultChan():
			default:
				flush()
				continue
			}
		} else {
			select {
			case <-ctx.Done():
				if serr := silent(); serr != nil {
					return watchEarly, serr
				}
				return watchTimeout, nil
			case <-w.expired():
				w.expiry = nil
				w.publish()
				continue
			case <-w.nudge:
				w.publish()
				continue
			case ev, ok = <-wi.ResultChan():
			}
		}
		if !ok {
			if serr := silent(); serr != nil {
				return watchEarly, serr
			}
			full := time.Duration(timeout) * time.Second
			if time.Since(start) < full-min(5*time.Second, full/4) {
				return watchEarly, nil
			}
			return watchTimeout, nil
		}
		w.r.answered()
		switch ev.Type {
		case watch.Added, watch.Modified, watch.Deleted:
			s, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			if ev.Type != watch.Deleted && w.portRenamed(ctx, s) {
				// The controller rewrote the slice for a Service
				// whose port changed name: its endpoints must not
				// vanish for the old name. The events before it are
				// published (flush, deferred); the list re-reads the
				// Service and publishes under the new one.
				return watchRelist, nil
			}
			w.rv = s.ResourceVersion
			if ev.Type == watch.Deleted {
				delete(w.slices, s.Name)
				dirty = true
				continue
			}
			nv := view(s)
			prev, had := w.slices[s.Name]
			w.slices[s.Name] = nv
			if had && renewedOnly(prev, nv, time.Now()) {
				// A registrant's renewal: the set is the same, only
				// when it could expire moved. Merging here cost a
				// merge of every endpoint per renewal, TTL/3 apart
				// for each registration.
				w.setExpiry(firstExpiry(w.slices, time.Now()))
				continue
			}
			dirty = true
		case watch.Bookmark:
			if s, ok := ev.Object.(*discoveryv1.EndpointSlice); ok {
				w.rv = s.ResourceVersion
			}
		case watch.Error:
			err := apierrors.FromObject(ev.Object)
			if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
				return watchGone, nil
			}
			return watchEarly, w.r.apiError(outer, what, err)
		}
	}
}

// portRenamed reports whether s has endpoints but no port of the chosen
// name because the Service's port now has another name (a rename, which
// the EndpointSlice controller carries into every slice). A slice that
// lacks the port while the Service still names it is left to the merge,
// which skips it. An error reading the Service is reported as a rename,
// so that the list, which reports it and keeps the set, runs.
func (w *watcher) portRenamed(ctx context.Context, s *discoveryv1.EndpointSlice) bool {
	if len(s.Endpoints) == 0 {
		return false
	}
	if _, ok := slicePort(s, w.port); ok {
		return false
	}
	if _, ok := slicePort(s, w.prevPort); ok && w.prevPort != "" {
		return false // not rewritten yet
	}
	name, err := w.r.portName(ctx, w.ref)
	return err != nil || name != w.port
}
