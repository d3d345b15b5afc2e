package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/wayfinder-rpc/wayfinder/internal/backoff"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Register implements registry.Registrar for instances outside Pods,
// such as VMs: it writes one Wayfinder-managed EndpointSlice per
// instance (label endpointslice.kubernetes.io/managed-by=wayfinder) and,
// if the Service does not exist, creates it without a selector, as
// Kubernetes documents for endpoints it does not manage. Pods need no
// Register: the EndpointSlice controller lists them from the Service's
// selector and their readiness.
//
// In a cluster (or WithPodCheck), an instance whose address is already an
// endpoint of a slice the backend did not write (a Pod, listed by the
// EndpointSlice controller) is Kubernetes's to manage: Register writes nothing for it, logs that
// it did not, and returns nil, and Deregister has nothing to delete.
// Its drain works through its readiness probe: NOT_SERVING makes the
// kubelet mark it not ready, and the watch drops it. So that a
// server.Server waiting for its own ID to leave its watch view waits for
// exactly that, this Registry (and only it) shows the Pod's endpoint
// under the registered ID from then on, Deregister included.
//
// Liveness: the Registry renews the slice every TTL/3 (WithTTL, default
// DefaultTTL) until Deregister or Close, and re-creates it if it was
// deleted; readers drop an endpoint not renewed for a TTL, so the
// endpoints of a registrant that crashed disappear. The renewal changes
// no instance, so it wakes no watcher.
func (r *Registry) Register(ctx context.Context, inst registry.Instance) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	ref, err := r.ref(inst.Service)
	if err != nil {
		return err
	}
	if r.isClosed() {
		return fmt.Errorf("kubernetes: register %v: %w", inst, registry.ErrClosed)
	}
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	op := "register " + inst.Key()
	port, err := r.ensureService(ctx, ref, inst)
	if err != nil {
		return withOp(op, err)
	}
	if r.opts.podCheck {
		managed, err := r.kubernetesManaged(ctx, ref, inst)
		if err != nil {
			return withOp(op, err)
		}
		if managed {
			r.opts.logger.Info("kubernetes: instance is an endpoint Kubernetes manages (a Pod); Register writes nothing", "instance", inst.String())
			r.addAlias(inst)
			return nil
		}
	}
	stamp, err := r.putSliceRetry(ctx, ref, port, inst, false)
	if err != nil {
		return withOp(op, r.apiError(ctx, "write endpointslice", err))
	}
	r.renew(ref, port, inst, stamp)
	return nil
}

func (r *Registry) putSliceRetry(ctx context.Context, ref serviceRef, port string, inst registry.Instance, renewal bool) (time.Time, error) {
	var (
		stamp time.Time
		err   error
	)
	for attempt := 0; attempt < 6; attempt++ {
		stamp, err = r.putSlice(ctx, ref, port, inst, renewal)
		if err == nil || !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			break
		}
	}
	return stamp, err
}

// registration is the renewal loop of one registered instance. inst,
// stamp (its registration stamp), err, writes and changed are guarded by
// Registry.mu.
type registration struct {
	inst   registry.Instance
	stamp  time.Time
	cancel context.CancelFunc
	done   chan struct{}

	err     error         // the last renewal's error; nil once one succeeds
	writes  int           // slices written: 1, plus one per re-creation after deletion
	changed chan struct{} // closed and replaced when err or writes change
}

// setLocked records the outcome of a renewal and wakes Status's waiters
// if it changed anything. Callers hold Registry.mu.
func (reg *registration) setLocked(err error, rewritten bool) {
	if (err == nil) == (reg.err == nil) && !rewritten && (err == nil || err.Error() == reg.err.Error()) {
		return
	}
	reg.err = err
	if rewritten {
		reg.writes++
	}
	close(reg.changed)
	reg.changed = make(chan struct{})
}

// renew starts the renewal loop of inst, or updates the instance an
// existing loop renews.
func (r *Registry) renew(ref serviceRef, port string, inst registry.Instance, stamp time.Time) {
	key := inst.Key()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if reg, ok := r.regs[key]; ok {
		reg.inst, reg.stamp = inst.Clone(), stamp
		return
	}
	ctx, cancel := context.WithCancel(r.ctx)
	reg := &registration{inst: inst.Clone(), stamp: stamp, cancel: cancel, done: make(chan struct{}), writes: 1, changed: make(chan struct{})}
	r.regs[key] = reg
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(reg.done)
		for {
			// Every TTL/3, jittered over its upper half so that many
			// registrations do not renew together.
			if !backoff.Sleep(ctx, backoff.Delay(1, r.opts.ttl/3, r.opts.ttl/3)) {
				return
			}
			r.mu.Lock()
			cur, stamp := reg.inst, reg.stamp
			r.mu.Unlock()
			stamp, rewritten, err := r.renewSlice(ctx, ref, port, cur, stamp)
			if err != nil {
				if ctx.Err() == nil {
					r.opts.logger.Warn("kubernetes: renewing a registration failed; retrying", "instance", cur.String(), "err", err)
					err = withOp("renew "+cur.Key(), r.apiError(ctx, "renew endpointslice", err)) // takes mu
					r.mu.Lock()
					reg.setLocked(err, false)
					r.mu.Unlock()
				}
				continue
			}
			if rewritten {
				r.rewrites.Add(1)
			}
			r.mu.Lock()
			if reg.inst.Equal(cur) {
				reg.stamp = stamp
			}
			reg.setLocked(nil, rewritten)
			r.mu.Unlock()
		}
	}()
}

// stopRenewal stops the renewal loop of inst, if any, and waits for it.
func (r *Registry) stopRenewal(inst registry.Instance) {
	r.mu.Lock()
	reg, ok := r.regs[inst.Key()]
	delete(r.regs, inst.Key())
	r.mu.Unlock()
	if ok {
		reg.cancel()
		<-reg.done
	}
}

// Deregister implements registry.Registrar: it deletes the instance's
// slice. It is idempotent.
func (r *Registry) Deregister(ctx context.Context, inst registry.Instance) error {
	ref, err := r.ref(inst.Service)
	if err != nil {
		return err
	}
	r.stopRenewal(inst)
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	err = r.slices.EndpointSlices(ref.namespace).Delete(ctx, sliceName(inst), metav1.DeleteOptions{})
	if err != nil && (!apierrors.IsNotFound(err) || notStatus(err)) {
		return withOp("deregister "+inst.Key(), r.apiError(ctx, "delete endpointslice", err))
	}
	return nil
}

// addAlias makes this Registry's views show the endpoint at inst's
// address under inst.ID, and has its watchers of the service publish
// again.
func (r *Registry) addAlias(inst registry.Instance) {
	r.mu.Lock()
	if r.aliases[inst.Service] == nil {
		r.aliases[inst.Service] = map[string]string{}
	}
	r.aliases[inst.Service][inst.Address] = inst.ID
	ws := slices.Collect(maps.Keys(r.active[inst.Service]))
	r.mu.Unlock()
	for _, w := range ws {
		select {
		case w.nudge <- struct{}{}:
		default:
		}
	}
}

// aliasesOf returns a copy of the service's aliases.
func (r *Registry) aliasesOf(service string) map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.aliases[service])
}

// kubernetesManaged reports whether inst's address is an endpoint of a
// slice of its Service that the backend did not write. Only those
// slices are listed, so that registering many instances stays cheap.
func (r *Registry) kubernetesManaged(ctx context.Context, ref serviceRef, inst registry.Instance) (bool, error) {
	ctx, cancel := r.callCtx(ctx)
	defer cancel()
	sel := selector(ref) + "," + discoveryv1.LabelManagedBy + "!=" + ManagedBy
	l, err := r.slices.EndpointSlices(ref.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return false, r.apiError(ctx, fmt.Sprintf("list endpointslices of %s/%s", ref.namespace, ref.name), err)
	}
	host, port, _ := net.SplitHostPort(inst.Address)
	for i := range l.Items {
		s := &l.Items[i]
		for _, p := range s.Ports {
			if p.Port == nil || strconv.Itoa(int(*p.Port)) != port {
				continue
			}
			for _, ep := range s.Endpoints {
				if len(ep.Addresses) > 0 && ep.Addresses[0] == host {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

// sliceName is the name of the slice of one instance: a hash of its
// service and ID, since IDs need not be valid object names.
func sliceName(inst registry.Instance) string {
	h := sha256.Sum256([]byte(inst.Key()))
	return "wayfinder-" + hex.EncodeToString(h[:10])
}

// ensureService returns the port name of the instance's Service,
// creating the Service without a selector if it does not exist.
func (r *Registry) ensureService(ctx context.Context, ref serviceRef, inst registry.Instance) (string, error) {
	r.mu.Lock()
	name, ok := r.ports[ref.namespace+"/"+ref.name]
	r.mu.Unlock()
	if ok {
		return name, nil
	}
	name, err := r.portName(ctx, ref)
	if err == nil || !errors.Is(err, ErrServiceNotFound) {
		return name, err
	}
	_, p, _ := net.SplitHostPort(inst.Address)
	num, _ := strconv.Atoi(p)
	name = DefaultPortName
	if r.opts.port != "" {
		if n, err := strconv.Atoi(r.opts.port); err == nil {
			num = n
		} else {
			name = r.opts.port
		}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: ref.name, Namespace: ref.namespace,
			Labels: map[string]string{discoveryv1.LabelManagedBy: ManagedBy},
		},
		Spec: corev1.ServiceSpec{
			// No selector: the endpoints are the slices Register writes.
			Ports: []corev1.ServicePort{{Name: name, Port: int32(num), TargetPort: intstr.FromInt32(int32(num)), Protocol: corev1.ProtocolTCP}},
		},
	}
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	if _, err := r.core.Services(ref.namespace).Create(cctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", r.apiError(ctx, fmt.Sprintf("create service %s/%s", ref.namespace, ref.name), err)
	}
	return r.portName(ctx, ref)
}

// putSlice creates or updates the instance's slice. A Register that
// changes nothing while the registration is live writes nothing and
// keeps the registration stamp; a renewal (or a Register after the
// registration expired) renews it, keeping the stamp if the instance is
// unchanged.
func (r *Registry) putSlice(ctx context.Context, ref serviceRef, port string, inst registry.Instance, renewal bool) (time.Time, error) {
	ctx, cancel := r.callCtx(ctx)
	defer cancel()
	api := r.slices.EndpointSlices(ref.namespace)
	now := time.Now()
	stamp := now
	ttl := int(r.opts.ttl / time.Second)
	want, err := buildSlice(ref, port, inst, now, now, ttl)
	if err != nil {
		return stamp, err
	}
	_, err = api.Create(ctx, want, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return stamp, err
	}
	cur, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		return stamp, err
	}
	one := map[string]sliceView{cur.Name: view(cur)}
	if got, _ := mergeAt(inst.Service, port, "", one, time.Time{}, nil); len(got) == 1 && got[0].Equal(inst) {
		// The same instance: keep its stamp.
		stamp = got[0].Registered
		if live, _ := mergeAt(inst.Service, port, "", one, now, nil); len(live) == 1 && !renewal {
			return stamp, nil
		}
		if want, err = buildSlice(ref, port, inst, stamp, now, ttl); err != nil {
			return stamp, err
		}
	}
	if cur.AddressType != want.AddressType {
		// The address type of a slice cannot change: replace it. The
		// caller retries the AlreadyExists of a concurrent writer.
		err := api.Delete(ctx, cur.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &cur.ResourceVersion}})
		if err != nil {
			return stamp, err
		}
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		return stamp, err
	}
	want.ResourceVersion = cur.ResourceVersion
	_, err = api.Update(ctx, want, metav1.UpdateOptions{})
	return stamp, err
}

// renewSlice renews inst's registration with one merge patch of its
// annotation; a slice that is gone is written again (rewritten).
func (r *Registry) renewSlice(ctx context.Context, ref serviceRef, port string, inst registry.Instance, stamp time.Time) (_ time.Time, rewritten bool, _ error) {
	fields, err := managedJSON(inst, stamp, time.Now(), int(r.opts.ttl/time.Second))
	if err != nil {
		return stamp, false, err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationInstance: fields}}})
	if err != nil {
		return stamp, false, err
	}
	pctx, cancel := r.callCtx(ctx)
	_, err = r.slices.EndpointSlices(ref.namespace).Patch(pctx, sliceName(inst), types.MergePatchType, patch, metav1.PatchOptions{})
	cancel()
	if apierrors.IsNotFound(err) {
		stamp, err = r.putSliceRetry(ctx, ref, port, inst, true)
		return stamp, err == nil, err
	}
	return stamp, false, err
}

func managedJSON(inst registry.Instance, registered, renewed time.Time, ttlSeconds int) (string, error) {
	b, err := json.Marshal(managedFields{
		ID: inst.ID, Version: inst.Version, Weight: inst.Weight,
		Tags: inst.Tags, Metadata: inst.Metadata, Registered: registered.UTC(),
		Renewed: renewed.UTC(), TTLSeconds: ttlSeconds,
	})
	return string(b), err
}

func buildSlice(ref serviceRef, port string, inst registry.Instance, registered, renewed time.Time, ttlSeconds int) (*discoveryv1.EndpointSlice, error) {
	host, p, err := net.SplitHostPort(inst.Address)
	if err != nil {
		return nil, err
	}
	num, err := strconv.Atoi(p)
	if err != nil {
		return nil, err
	}
	fields, err := managedJSON(inst, registered, renewed, ttlSeconds)
	if err != nil {
		return nil, err
	}
	yes := true
	ep := discoveryv1.Endpoint{
		Addresses:  []string{host},
		Conditions: discoveryv1.EndpointConditions{Ready: &yes, Serving: &yes},
	}
	if inst.Zone != "" {
		ep.Zone = &inst.Zone
	}
	pn, pnum, tcp := port, int32(num), corev1.ProtocolTCP
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      sliceName(inst),
			Namespace: ref.namespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: ref.name,
				discoveryv1.LabelManagedBy:   ManagedBy,
			},
			Annotations: map[string]string{AnnotationInstance: fields},
		},
		AddressType: addressType(host),
		Endpoints:   []discoveryv1.Endpoint{ep},
		Ports:       []discoveryv1.EndpointPort{{Name: &pn, Port: &pnum, Protocol: &tcp}},
	}, nil
}
