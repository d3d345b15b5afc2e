package driver

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// maxSeen bounds the memory of reported problems: when it is full it is
// emptied, so a registry full of bad values logs each again, once.
const maxSeen = 4096

// FieldReporter keeps the registry.FieldProblems a backend meets while
// decoding instances, and reports each once per instance and value: one
// Warn log and one count, however many watchers and lookups decode the
// same value again. A backend's FieldProblems method (the optional
// registry.FieldProblemReporter) returns its FieldProblems.
//
// It is safe for concurrent use. mu guards seen and current.
type FieldReporter struct {
	backend string
	log     *slog.Logger
	count   atomic.Uint64

	mu      sync.Mutex
	seen    map[string]struct{}                           // service\x00id\x00field\x00value
	current map[string]map[string][]registry.FieldProblem // service → id → problems of its last decode
}

// NewFieldReporter returns a FieldReporter logging to log (slog.Default
// if nil) as backend ("consul", "etcd").
func NewFieldReporter(backend string, log *slog.Logger) *FieldReporter {
	if log == nil {
		log = slog.Default()
	}
	return &FieldReporter{backend: backend, log: log, seen: map[string]struct{}{}, current: map[string]map[string][]registry.FieldProblem{}}
}

// Observe records the problems of one decode of service/id (none clears
// them), logging and counting those not reported before.
func (r *FieldReporter) Observe(service, id string, problems []registry.FieldProblem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	byID := r.current[service]
	if len(problems) == 0 {
		if byID != nil {
			delete(byID, id)
			if len(byID) == 0 {
				delete(r.current, service)
			}
		}
		return
	}
	if byID == nil {
		if len(r.current) >= maxSeen {
			clear(r.current)
		}
		byID = map[string][]registry.FieldProblem{}
		r.current[service] = byID
	}
	if len(byID) >= maxSeen {
		clear(byID)
	}
	byID[id] = slices.Clone(problems)
	for _, p := range problems {
		k := strings.Join([]string{p.Service, p.ID, p.Field, p.Value}, "\x00")
		if _, ok := r.seen[k]; ok {
			continue
		}
		if len(r.seen) >= maxSeen {
			clear(r.seen)
		}
		r.seen[k] = struct{}{}
		r.count.Add(1)
		r.log.Warn(r.backend+": ignoring a field of an instance; it is kept with the field's default",
			"service", p.Service, "id", p.ID, "field", p.Field, "value", p.Value, "reason", p.Reason)
	}
}

// FieldProblems implements registry.FieldProblemReporter.
func (r *FieldReporter) FieldProblems(service string) []registry.FieldProblem {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []registry.FieldProblem
	for _, id := range slices.Sorted(maps.Keys(r.current[service])) {
		out = append(out, r.current[service][id]...)
	}
	slices.SortStableFunc(out, func(a, b registry.FieldProblem) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Field, b.Field))
	})
	return out
}

// Count is the number of problems reported (logged) so far.
func (r *FieldReporter) Count() uint64 { return r.count.Load() }

// CutValue shortens a foreign value for logs and reports
// (FieldProblem.Value): to 64 bytes at most.
func CutValue(v string) string {
	if len(v) <= 64 {
		return v
	}
	return v[:61] + "..."
}

// Sanitize is the decode-and-sanitise step of every backend: it
// validates inst (a backend's decoded instance) and, while
// Instance.Validate rejects one of its optional fields (Version, Zone,
// Weight, Tags, Metadata), resets that field (drops the tag or metadata
// pair) and records a problem under the name field(f) gives it. A problem with ID, Service or Address is an
// error: without them there is no instance.
func Sanitize(inst registry.Instance, field func(string) string) (registry.Instance, []registry.FieldProblem, error) {
	var problems []registry.FieldProblem
	add := func(f, value, reason string) {
		problems = append(problems, registry.FieldProblem{Service: inst.Service, ID: inst.ID, Field: field(f), Value: CutValue(value), Reason: reason})
	}
	for range 1 + registry.MaxTags + registry.MaxMetadataPairs + 8 {
		err := inst.Validate()
		if err == nil {
			return inst, problems, nil
		}
		var ie *registry.InvalidError
		if !errors.As(err, &ie) {
			return inst, problems, err
		}
		switch f := ie.Field; {
		case f == "Version":
			add(f, inst.Version, ie.Reason)
			inst.Version = ""
		case f == "Zone":
			add(f, inst.Zone, ie.Reason)
			inst.Zone = ""
		case f == "Weight":
			add(f, strconv.Itoa(inst.Weight), ie.Reason)
			inst.Weight = 0
		case f == "Tags":
			add(f, fmt.Sprint(len(inst.Tags), " tags"), ie.Reason)
			inst.Tags = slices.Clone(inst.Tags[:registry.MaxTags])
		case strings.HasPrefix(f, "Tags["):
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(f, "Tags["), "]"))
			if n < 0 || n >= len(inst.Tags) {
				return inst, problems, err
			}
			add("Tags", inst.Tags[n], ie.Reason)
			inst.Tags = slices.Delete(slices.Clone(inst.Tags), n, n+1)
		case f == "Metadata" && len(inst.Metadata) > registry.MaxMetadataPairs:
			add(f, fmt.Sprint(len(inst.Metadata), " pairs"), ie.Reason)
			md := map[string]string{}
			for _, k := range slices.Sorted(maps.Keys(inst.Metadata))[:registry.MaxMetadataPairs] {
				md[k] = inst.Metadata[k]
			}
			inst.Metadata = md
		case f == "Metadata" || strings.HasPrefix(f, "Metadata["):
			k, ok := "", true
			if f != "Metadata" { // Metadata["k"]
				k, err = strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(f, "Metadata["), "]"))
				ok = err == nil
			}
			if _, has := inst.Metadata[k]; !ok || !has {
				return inst, problems, ie
			}
			add("Metadata."+k, inst.Metadata[k], ie.Reason)
			inst.Metadata = maps.Clone(inst.Metadata)
			delete(inst.Metadata, k)
		default:
			return inst, problems, err
		}
	}
	return inst, problems, errors.New("driver: Sanitize: too many invalid fields")
}
