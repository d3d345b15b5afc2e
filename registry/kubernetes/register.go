package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

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
// An instance whose address is already an endpoint of a slice the
// backend did not write (a Pod, listed by the EndpointSlice controller)
// is Kubernetes's to manage: Register writes nothing for it, logs that
// it did not, and returns nil, and Deregister has nothing to delete.
// Its drain works through its readiness probe: NOT_SERVING makes the
// kubelet mark it not ready, and the watch drops it.
//
// The slice has no liveness of its own: a registrant that crashes
// without Deregister leaves its endpoint until it is deleted.
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
	port, err := r.ensureService(ctx, ref, inst)
	if err != nil {
		return fmt.Errorf("kubernetes: register %v: %w", inst, err)
	}
	if managed, err := r.kubernetesManaged(ctx, ref, inst); err != nil {
		return fmt.Errorf("kubernetes: register %v: %w", inst, err)
	} else if managed {
		r.opts.logger.Info("kubernetes: instance is an endpoint Kubernetes manages (a Pod); Register writes nothing", "instance", inst.String())
		return nil
	}
	for attempt := 0; ; attempt++ {
		err = r.putSlice(ctx, ref, port, inst)
		if err == nil || !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) || attempt == 5 {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("kubernetes: register %v: %w", inst, r.apiError("write endpointslice", err))
	}
	return nil
}

// Deregister implements registry.Registrar: it deletes the instance's
// slice. It is idempotent.
func (r *Registry) Deregister(ctx context.Context, inst registry.Instance) error {
	ref, err := r.ref(inst.Service)
	if err != nil {
		return err
	}
	ctx, cancel := r.callCtx(ctx)
	defer cancel()
	err = r.slices.EndpointSlices(ref.namespace).Delete(ctx, sliceName(inst), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kubernetes: deregister %v: %w", inst, r.apiError("delete endpointslice", err))
	}
	return nil
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
		return false, r.apiError(fmt.Sprintf("list endpointslices of %s/%s", ref.namespace, ref.name), err)
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
		return "", r.apiError(fmt.Sprintf("create service %s/%s", ref.namespace, ref.name), err)
	}
	return r.portName(ctx, ref)
}

// putSlice creates or updates the instance's slice. An update that
// changes nothing keeps the registration stamp and writes nothing.
func (r *Registry) putSlice(ctx context.Context, ref serviceRef, port string, inst registry.Instance) error {
	ctx, cancel := r.callCtx(ctx)
	defer cancel()
	api := r.slices.EndpointSlices(ref.namespace)
	want, err := buildSlice(ref, port, inst, time.Now())
	if err != nil {
		return err
	}
	_, err = api.Create(ctx, want, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	cur, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if got := merge(inst.Service, port, map[string]*discoveryv1.EndpointSlice{cur.Name: cur}); len(got) == 1 && got[0].Equal(inst) {
		return nil // identical: keep the stamp
	}
	if cur.AddressType != want.AddressType {
		// The address type of a slice cannot change: replace it. The
		// caller retries the AlreadyExists of a concurrent writer.
		err := api.Delete(ctx, cur.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &cur.ResourceVersion}})
		if err != nil {
			return err
		}
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	want.ResourceVersion = cur.ResourceVersion
	_, err = api.Update(ctx, want, metav1.UpdateOptions{})
	return err
}

func buildSlice(ref serviceRef, port string, inst registry.Instance, now time.Time) (*discoveryv1.EndpointSlice, error) {
	host, p, err := net.SplitHostPort(inst.Address)
	if err != nil {
		return nil, err
	}
	num, err := strconv.Atoi(p)
	if err != nil {
		return nil, err
	}
	fields, err := json.Marshal(managedFields{
		ID: inst.ID, Version: inst.Version, Weight: inst.Weight,
		Tags: inst.Tags, Metadata: inst.Metadata, Registered: now.UTC(),
	})
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
			Annotations: map[string]string{AnnotationInstance: string(fields)},
		},
		AddressType: addressType(host),
		Endpoints:   []discoveryv1.Endpoint{ep},
		Ports:       []discoveryv1.EndpointPort{{Name: &pn, Port: &pnum, Protocol: &tcp}},
	}, nil
}
