// Package multi is a registry composed of others, for moving a running
// fleet from one registry to another without downtime: servers register
// in both while clients read both, then clients read the new one alone,
// then servers stop writing the old one. docs/migration.md is the
// runbook. Importing the package registers the multi:// scheme.
//
// # URLs
//
//	multi://?read=<URL>[,<URL>...][&write=<URL>[,<URL>...]][&shadow=<URL>[,<URL>...]]
//
// such as
//
//	multi://?read=consul://10.0.0.1:8500,etcd://10.0.0.2:2379&write=consul://10.0.0.1:8500,etcd://10.0.0.2:2379
//
// read lists the members clients read, write those servers register in,
// shadow those compared with the read ones and never served (see
// Shadows); a member may be in several lists (it is opened once). There
// is no other parameter and no host. A list is one comma-separated value, by the
// query rules every backend shares (registry/driver): read= given twice
// is an error, like any parameter given twice. A member URL starts at
// each comma followed by a scheme and "://", so that a comma inside a
// member URL (an etcd host list, a Consul dc= list) stays in it:
// "read=consul://a:8500?dc=dc1,dc2,etcd://b:2379,c:2379" is two members.
// A member's query of one parameter can be written as it is; from its
// second parameter on, the member's '&' must be %-encoded as %26 (or the
// whole member URL %-encoded), else it would be multi's: an unknown
// parameter after a member URL with a query is an error that says so.
//
// Members are opened through the registry.URLMux that opens the multi URL
// (driver.MuxOpener), with its logger, so a program's own mux, with its
// own configured backends, opens the members too. Member URLs follow
// their backend's rules; every error about one names it redacted
// (driver.Redact), never its query or user information. A multi member
// is an error (nesting), as is a URL without a read member. Without a
// write member the registry is read-only: Register and Deregister fail
// with ErrReadOnly.
//
// # Reads
//
// Lookup, Watch and Services return the union of every read member's
// set, one instance per ID, sorted by ID. Where two members report the
// same ID with different values, the member listed first in read= wins
// (as Consul's first datacenter does): list the registry you trust during
// the step first.
//
// A watch is a driver.Watcher fed with the union, so the watch contract
// of every backend holds. An outage of one member never removes the
// instances it reported: its last set stays in the union, its error is
// the watch's error (one per outage, a *registry.UnavailableError naming
// the member), and a change another member reports meanwhile is passed
// on followed by that error again, so that a client follows the healthy
// member and knows the set is partly stale. The first set waits for
// every member's first answer; while a member has never answered, the
// watch reports its error rather than a union without it. Lookup and
// Services fail if any read member fails, for the same reason: a partial
// answer could lack instances only the failing member holds.
//
// # Writes
//
// Register and Deregister write to every write member at once, each
// bounded by the caller's deadline, else by the member's own bound, so
// that a slow or unreachable member delays none of the others. A member
// whose write failed is retried in the background (one goroutine per
// write member, with internal/backoff's jittered backoff, each attempt
// within WithRetry's bound) until it succeeds, the instance is
// registered or deregistered again, or Close. Status and MemberStatus
// report each member's state.
//
// # Shadows
//
// A shadow member (shadow=, WithShadow) is the new registry seen from
// clients that still read the old one: every watch also watches the
// shadows and compares their union with the read union whenever either
// changes (Compare: instances only in one, or with other address,
// version, zone, weight, tags or metadata). The gauge
// wayfinder.discovery.shadow_differences (OpenTelemetry, attribute
// wayfinder.backend=multi; WithMeterProvider, URLOpener.MeterProvider)
// is the number of differing instances over the watched services, and
// ShadowDifferences lists them. A shadow's outage is not the watch's and
// delays nothing; its last set stays in the comparison. A whole registry
// is compared once with Diff (the wayfinder diff command).
//
// # Errors
//
// An unreachable member's errors are its backend's
// *registry.UnavailableError, naming the member; multi joins them and
// prefixes the operation ("multi: lookup \"hello\": etcd://...: ...").
// errors.Is(err, registry.ErrUnavailable) and errors.As work as for any
// backend.
//
// # Concurrency
//
// A Registry is safe for concurrent use. Close stops its watchers and
// retriers and waits for them, then closes every member.
package multi
