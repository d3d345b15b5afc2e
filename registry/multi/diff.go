package multi

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Kind says how an instance differs between two registries.
type Kind string

// The kinds of Difference.
const (
	OnlyOld Kind = "only-old" // the old registry has it, the new one not
	OnlyNew Kind = "only-new" // the new registry has it, the old one not
	Differs Kind = "differs"  // both have it, with different fields
)

// FieldDiff is one field of an instance that two registries disagree
// about, each value as text.
type FieldDiff struct {
	Field string `json:"field"` // address, version, zone, weight, tags, metadata
	Old   string `json:"old"`
	New   string `json:"new"`
}

// Difference is one instance that two registries do not hold alike.
type Difference struct {
	Service string      `json:"service"`
	ID      string      `json:"id"`
	Kind    Kind        `json:"kind"`
	Address string      `json:"address"`          // the old one's, else the new one's
	Fields  []FieldDiff `json:"fields,omitempty"` // for Differs
}

// Compare returns how the instances of one service differ between an
// old and a new registry, sorted by ID: those only in one, and those in
// both whose address, version, zone, weight (0 read as
// registry.DefaultWeight), tags (in order) or metadata differ. The
// registration stamp is not compared: each registry keeps its own.
func Compare(old, new []registry.Instance) []Difference {
	byID := func(insts []registry.Instance) map[string]registry.Instance {
		m := make(map[string]registry.Instance, len(insts))
		for _, in := range insts {
			if _, dup := m[in.ID]; !dup {
				m[in.ID] = in
			}
		}
		return m
	}
	o, n := byID(old), byID(new)
	var out []Difference
	for id, oi := range o {
		ni, ok := n[id]
		if !ok {
			out = append(out, Difference{Service: oi.Service, ID: id, Kind: OnlyOld, Address: oi.Address})
			continue
		}
		if fs := fieldDiffs(oi, ni); fs != nil {
			out = append(out, Difference{Service: oi.Service, ID: id, Kind: Differs, Address: oi.Address, Fields: fs})
		}
	}
	for id, ni := range n {
		if _, ok := o[id]; !ok {
			out = append(out, Difference{Service: ni.Service, ID: id, Kind: OnlyNew, Address: ni.Address})
		}
	}
	slices.SortFunc(out, func(a, b Difference) int {
		return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.ID, b.ID))
	})
	return out
}

func fieldDiffs(o, n registry.Instance) []FieldDiff {
	var out []FieldDiff
	add := func(field, ov, nv string) {
		if ov != nv {
			out = append(out, FieldDiff{field, ov, nv})
		}
	}
	weight := func(w int) string {
		if w == 0 {
			w = registry.DefaultWeight
		}
		return fmt.Sprint(w)
	}
	meta := func(m map[string]string) string {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			kv = append(kv, k+"="+m[k])
		}
		return strings.Join(kv, ",")
	}
	add("address", o.Address, n.Address)
	add("version", o.Version, n.Version)
	add("zone", o.Zone, n.Zone)
	add("weight", weight(o.Weight), weight(n.Weight))
	if !slices.Equal(o.Tags, n.Tags) {
		out = append(out, FieldDiff{"tags", strings.Join(o.Tags, ","), strings.Join(n.Tags, ",")})
	}
	if !maps.Equal(o.Metadata, n.Metadata) {
		out = append(out, FieldDiff{"metadata", meta(o.Metadata), meta(n.Metadata)})
	}
	return out
}

// Report is how two registries differ: Services is the number of
// services compared and Instances the number of distinct instances seen.
type Report struct {
	Services    int          `json:"services"`
	Instances   int          `json:"instances"`
	Differences []Difference `json:"differences"`
}

// Equal reports whether the registries held the same.
func (r Report) Equal() bool { return len(r.Differences) == 0 }

// SideError is an error of Diff: which registry, "old" or "new", could
// not be read, and why.
type SideError struct {
	Side string
	Err  error
}

func (e *SideError) Error() string { return e.Side + " registry: " + e.Err.Error() }
func (e *SideError) Unwrap() error { return e.Err }

// Diff compares an old and a new registry: the given services, or, if
// services is empty, every service either lists (both must then be
// registry.ServiceListers). Each call is bounded by ctx. Any error of
// either registry is Diff's error, a *SideError saying which: a registry
// that could not be read is not reported as differing.
func Diff(ctx context.Context, old, new registry.Discovery, services ...string) (Report, error) {
	if len(services) == 0 {
		for i, d := range []registry.Discovery{old, new} {
			side := []string{"old", "new"}[i]
			l, ok := d.(registry.ServiceLister)
			if !ok {
				return Report{}, &SideError{side, fmt.Errorf("%T cannot list its services; name the service", d)}
			}
			names, err := l.Services(ctx)
			if err != nil {
				return Report{}, &SideError{side, err}
			}
			services = append(services, names...)
		}
		slices.Sort(services)
		services = slices.Compact(services)
	}
	rep := Report{Services: len(services), Differences: []Difference{}}
	for _, svc := range services {
		o, err := old.Lookup(ctx, svc)
		if err != nil {
			return Report{}, &SideError{"old", err}
		}
		n, err := new.Lookup(ctx, svc)
		if err != nil {
			return Report{}, &SideError{"new", err}
		}
		d := Compare(o, n)
		rep.Differences = append(rep.Differences, d...)
		seen := map[string]bool{}
		for _, in := range append(o, n...) {
			seen[in.ID] = true
		}
		rep.Instances += len(seen)
	}
	return rep, nil
}
