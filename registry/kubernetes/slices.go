package kubernetes

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

// Labels and annotations the backend reads and writes.
const (
	// ManagedBy is the endpointslice.kubernetes.io/managed-by value of the
	// EndpointSlices that Register writes, so that the EndpointSlice
	// controller leaves them alone and they are easy to find.
	ManagedBy = "wayfinder"
	// AnnotationInstance holds, on a Wayfinder-managed EndpointSlice, the
	// JSON of the fields of the instance that an endpoint cannot carry:
	// ID, version, weight, tags, metadata and the registration stamp.
	AnnotationInstance = "wayfinder-rpc.github.io/instance"
	// LabelVersion and LabelWeight, on a Service, give its endpoints a
	// Version and a Weight. The EndpointSlice controller copies a
	// Service's labels to its slices, so they are read from the slices
	// without any extra request.
	LabelVersion = "wayfinder-rpc.github.io/version"
	LabelWeight  = "wayfinder-rpc.github.io/weight"
)

// class is what an endpoint's conditions make of it.
type class int

const (
	excluded class = iota
	// lastResort: serving and terminating. Used only when no endpoint of
	// the service is ready, as kube-proxy does.
	lastResort
	ready
)

// classify applies the EndpointSlice conditions: a nil ready or serving
// means true, a nil terminating false (the API's own defaults).
func classify(c discoveryv1.EndpointConditions) class {
	isReady := c.Ready == nil || *c.Ready
	serving := isReady
	if c.Serving != nil {
		serving = *c.Serving
	}
	terminating := c.Terminating != nil && *c.Terminating
	switch {
	case isReady:
		return ready
	case serving && terminating:
		return lastResort
	default:
		return excluded
	}
}

// managedFields is the annotation's JSON.
type managedFields struct {
	ID         string            `json:"id"`
	Version    string            `json:"version,omitempty"`
	Weight     int               `json:"weight,omitempty"`
	Tags       []string          `json:"tags,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	Registered time.Time         `json:"registered,omitzero"`
	// Renewed and TTLSeconds are the registration's liveness: the
	// registrant renews the slice every TTL/3, and readers drop an
	// endpoint not renewed for TTLSeconds (by their own clock, as
	// Kubernetes itself reads node Leases). TTLSeconds 0: no expiry.
	Renewed    time.Time `json:"renewed,omitzero"`
	TTLSeconds int       `json:"ttlSeconds,omitempty"`
}

// candidate is one endpoint of one slice, before the merge.
type candidate struct {
	inst    registry.Instance
	class   class
	slice   string
	managed bool
}

// merge turns every slice of a service into its instance set: the
// endpoints with the chosen port name, one per address, ready ones only,
// or the serving-and-terminating ones if none is ready. An address found
// in several slices (while the controller moves it from one to another)
// counts once, with its best conditions. slices maps slice names to
// slices; the result is sorted by ID.
func merge(service string, port string, all map[string]*discoveryv1.EndpointSlice) []registry.Instance {
	insts, _ := mergeAt(service, port, "", views(all), time.Now(), nil)
	return insts
}

// sliceView is a slice with its Wayfinder annotation decoded (nil if it
// has none), so that a watcher decodes each version of a slice once, not
// once per merge.
type sliceView struct {
	s       *discoveryv1.EndpointSlice
	managed *managedFields
}

func view(s *discoveryv1.EndpointSlice) sliceView {
	v := sliceView{s: s}
	if s.Labels[discoveryv1.LabelManagedBy] == ManagedBy {
		var m managedFields
		if err := json.Unmarshal([]byte(s.Annotations[AnnotationInstance]), &m); err == nil && m.ID != "" {
			v.managed = &m
		}
	}
	return v
}

// expiry returns when v's registration expires; ok is false if it
// never does (a slice the backend did not write, or TTLSeconds 0).
func (v sliceView) expiry() (exp time.Time, ok bool) {
	if v.managed == nil || v.managed.TTLSeconds <= 0 {
		return time.Time{}, false
	}
	return v.managed.Renewed.Add(time.Duration(v.managed.TTLSeconds) * time.Second), true
}

// firstExpiry returns the first time a registration in all that is
// live at now expires (zero if none will).
func firstExpiry(all map[string]sliceView, now time.Time) time.Time {
	var next time.Time
	for _, v := range all {
		if exp, ok := v.expiry(); ok && now.Before(exp) && (next.IsZero() || exp.Before(next)) {
			next = exp
		}
	}
	return next
}

// renewedOnly reports whether next differs from prev only by a later
// renewal of a registration that was still live at now: the merge
// would give the same set, and only the expiry moves.
func renewedOnly(prev, next sliceView, now time.Time) bool {
	if prev.managed == nil || next.managed == nil {
		return false
	}
	if exp, ok := prev.expiry(); ok && !now.Before(exp) {
		return false // it had expired: the renewal brings it back
	}
	pm, nm := *prev.managed, *next.managed
	pm.Renewed, nm.Renewed = time.Time{}, time.Time{}
	if !reflect.DeepEqual(pm, nm) {
		return false
	}
	ps, ns := prev.s, next.s
	return ps.AddressType == ns.AddressType &&
		maps.Equal(ps.Labels, ns.Labels) &&
		reflect.DeepEqual(ps.Ports, ns.Ports) &&
		reflect.DeepEqual(ps.Endpoints, ns.Endpoints)
}

func views(all map[string]*discoveryv1.EndpointSlice) map[string]sliceView {
	out := make(map[string]sliceView, len(all))
	for name, s := range all {
		out[name] = view(s)
	}
	return out
}

// mergeAt is merge at time now, leaving out managed endpoints whose
// registration has expired; it also returns when the next live one
// expires (zero if none will). alias gives IDs to endpoints the backend
// did not write, by address: the IDs a Pod registered itself under.
//
// prev, if not empty, is the port's name before the Service renamed it:
// a slice that still carries it has not been rewritten by the
// controller yet, and its endpoints are still the Service's.
func mergeAt(service, port, prev string, all map[string]sliceView, now time.Time, alias map[string]string) ([]registry.Instance, time.Time) {
	insts, next, _ := mergeChecked(service, port, prev, all, now, alias)
	return insts, next
}

// mergeChecked is mergeAt that also returns, by instance ID, the
// problems driver.Sanitize found in the endpoints' fields: an endpoint
// with a bad optional field (a version, zone, weight, tag or metadata
// pair Instance.Validate rejects) is kept with that field's default, one
// with a bad ID or address is left out.
func mergeChecked(service, port, prev string, all map[string]sliceView, now time.Time, alias map[string]string) ([]registry.Instance, time.Time, map[string][]registry.FieldProblem) {
	var next time.Time
	problems := map[string][]registry.FieldProblem{}
	byAddr := map[string]candidate{}
	foreign := map[string]bool{} // addresses in slices the backend did not write
	for _, name := range sortedKeys(all) {
		s, managed := all[name].s, all[name].managed
		p, ok := slicePort(s, port)
		if !ok && prev != "" {
			p, ok = slicePort(s, prev)
		}
		if !ok {
			continue
		}
		if exp, ok := all[name].expiry(); ok {
			if !now.Before(exp) {
				continue // its registrant stopped renewing it
			}
			if next.IsZero() || exp.Before(next) {
				next = exp
			}
		}
		for _, ep := range s.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			c := classify(ep.Conditions)
			if c == excluded {
				continue
			}
			// Consumers use the first address: the others are, by the
			// API's definition, the same endpoint.
			addr := net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(p)))
			inst := registry.Instance{ID: addr, Service: service, Address: addr}
			if ep.Zone != nil {
				inst.Zone = *ep.Zone
			}
			if v := s.Labels[LabelVersion]; v != "" {
				inst.Version = v
			}
			var bad []registry.FieldProblem
			if lw := s.Labels[LabelWeight]; lw != "" {
				if w, err := strconv.Atoi(lw); err == nil && w > 0 && w <= registry.MaxWeight {
					inst.Weight = w
				} else if managed == nil {
					bad = append(bad, registry.FieldProblem{Field: "labels[" + LabelWeight + "]", Value: driver.CutValue(lw),
						Reason: fmt.Sprintf("not an integer in 1..%d", int(registry.MaxWeight))})
				}
			}
			if managed == nil {
				foreign[addr] = true
				if id, ok := alias[addr]; ok {
					inst.ID = id
				}
			} else {
				inst.ID, inst.Version, inst.Weight = managed.ID, managed.Version, managed.Weight
				inst.Tags, inst.Metadata, inst.Registered = managed.Tags, managed.Metadata, managed.Registered
			}
			inst, ps, err := driver.Sanitize(inst, func(f string) string { return fieldName(f, managed != nil) })
			for i := range bad {
				bad[i].Service, bad[i].ID = inst.Service, inst.ID
			}
			ps = append(bad, ps...)
			if err != nil {
				ps = append(ps, droppedProblem(inst, err, managed != nil))
			}
			if len(ps) > 0 {
				problems[inst.ID] = ps
			}
			if err != nil {
				continue
			}
			// The key is the address for endpoints the backend did not
			// write, so that an address in two slices counts once.
			if prev, dup := byAddr[inst.ID]; dup && prev.class >= c {
				continue // the first slice (by name) with the best conditions wins
			}
			byAddr[inst.ID] = candidate{inst: inst, class: c, slice: name, managed: managed != nil}
		}
	}
	// An address Kubernetes already lists (a Pod that also called
	// Register) is the Pod's endpoint, with the Pod's conditions.
	for id, c := range byAddr {
		if c.managed && foreign[c.inst.Address] {
			delete(byAddr, id)
		}
	}
	best := excluded
	for _, c := range byAddr {
		best = max(best, c.class)
	}
	out := make([]registry.Instance, 0, len(byAddr))
	for _, c := range byAddr {
		if c.class == best {
			out = append(out, c.inst)
		}
	}
	slices.SortFunc(out, func(a, b registry.Instance) int { return strings.Compare(a.ID, b.ID) })
	return out, next, problems
}

// fieldName names a field of Instance as the backend found it: in the
// annotation of a managed slice, or on an endpoint and the labels the
// Service gives its slices.
func fieldName(f string, managed bool) string {
	switch {
	case f == "Zone":
		return "endpoints[].zone"
	case f == "Address":
		return "endpoints[].addresses[0]"
	case f == "ID":
		return "annotations[" + AnnotationInstance + "].id"
	case !managed && f == "Version":
		return "labels[" + LabelVersion + "]"
	case !managed && f == "Weight":
		return "labels[" + LabelWeight + "]"
	}
	name := strings.ToLower(f[:1]) + f[1:] // Version -> version, Metadata.k -> metadata.k
	return "annotations[" + AnnotationInstance + "]." + name
}

// droppedProblem describes the endpoint that err (from driver.Sanitize:
// its ID or address is invalid) leaves out.
func droppedProblem(inst registry.Instance, err error, managed bool) registry.FieldProblem {
	p := registry.FieldProblem{Service: inst.Service, ID: inst.ID, Field: "endpoint", Reason: err.Error() + "; endpoint left out"}
	var ie *registry.InvalidError
	if errors.As(err, &ie) {
		p.Field, p.Reason = fieldName(ie.Field, managed), ie.Reason+"; endpoint left out"
		switch ie.Field {
		case "ID":
			p.Value = driver.CutValue(inst.ID)
		case "Address":
			p.Value = driver.CutValue(inst.Address)
		}
	}
	return p
}

// slicePort returns the number of the port named name in s.
func slicePort(s *discoveryv1.EndpointSlice, name string) (int32, bool) {
	for _, p := range s.Ports {
		pn := ""
		if p.Name != nil {
			pn = *p.Name
		}
		if pn == name && p.Port != nil {
			return *p.Port, true
		}
	}
	return 0, false
}

// addressType returns the EndpointSlice address type of host.
func addressType(host string) discoveryv1.AddressType {
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return discoveryv1.AddressTypeFQDN
	case ip.Is4() || ip.Is4In6():
		return discoveryv1.AddressTypeIPv4
	default:
		return discoveryv1.AddressTypeIPv6
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
