// Package driver is the API for people who write registry backends, kept
// apart from package registry, which is the API for people who use them
// (the split gocloud.dev makes between runtimevar and runtimevar/driver).
//
// A backend implements registry.Registry and registers a registry.Opener
// for its URL scheme with RegisterScheme. It does not implement the watch
// contract: its Watch returns a *Watcher made with NewWatcher, and feeds
// it from its own goroutines with Set (the full current set, and the
// registry's index of it) and Fail (an error wrapping
// registry.ErrUnavailable). The Watcher does the rest: the first Next at
// once, no update without a change, one error per outage, the set sent
// again after recovery, sorting, one instance per ID, copies, the index,
// ErrClosed and Close racing Next. Watchers tracks a Registry's open
// watchers so that closing the Registry closes them, and its Watch method
// is the prologue of every backend's Watch (validate the name, refuse
// after Close, make and track the Watcher, stop what feeds it on Close).
//
// Set refuses invalid instances: Next never returns an instance that
// registry.Instance.Validate rejects. An instance with a bad optional
// field is kept with that field's default, one with a bad ID, Service or
// Address is dropped, the rest of the set is fed as usual, and each
// problem is reported as a registry.FieldProblem (to the backend's
// FieldReporter given with ReportTo). Set never panics on, and never
// fails a set for, an invalid instance.
//
// One way to do each thing a backend needs:
//
//   - Watchers.Watch for Watch, and a Watcher fed with Set and Fail;
//   - Sanitize for each instance decoded from the registry, and a
//     FieldReporter (NewFieldReporter) that logs its problems once and
//     keeps them for the backend's FieldProblems method
//     (registry.FieldProblemReporter);
//   - Unavailable and Classify for errors of an unreachable registry;
//   - ParseURL, ReadURL and Redact for URLs;
//   - package drivermetrics for OpenTelemetry metrics (apart, so that
//     this package does not link OpenTelemetry).
//
// A new backend is then three things: what talks to its registry, a URL
// opener that reads its URL with ReadURL, and a harness for
// registrytest.RunConformanceTests, which runs the contract's success and
// error halves against a real server. Everything it needs is exported:
// registrytest's TestScratchBackend builds a backend in a module of its
// own, outside this repository, and runs the suite on it.
//
// # URLs
//
// Every backend parses its URLs through this package, so that a URL
// means the same whatever its scheme: ParseURL for a raw string (the
// backend's Open), ReadURL for the parts every registry URL shares and
// the query, Redact to show a URL. ReadURL's Query has one getter per
// type (String, StringOrEmpty, Bool, Duration, Int, List); Fail and
// Errorf record a backend's own checks, and Err returns the first error.
// The rules:
//
//   - Parameters are separated by '&'. A ';' anywhere in the query is an
//     error that says so (Go's url.ParseQuery drops such pairs, which
//     would silently lose settings).
//   - A parameter the backend does not know is an error naming it and
//     listing those it knows; so is a parameter given twice. A list is
//     one comma-separated value (dc=a,b), with no empty element.
//   - Every parameter has a value: a key alone (?tls) is an error, and so
//     is an empty value (?ttl=), each naming the key and the accepted
//     form, except where a backend documents a meaning for the empty
//     value (etcd's prefix=, the root of relative naming keys).
//   - Booleans are true or false, nothing else (not 1, t or TRUE);
//     durations are positive Go durations such as 30s or 1m30s; integers
//     are decimal.
//   - Names are case-sensitive, values are %-decoded, and a trailing '&'
//     is harmless.
//   - Every error wraps registry.ErrInvalidURL and shows the URL as
//     Redact does: scheme, host and path, with no user information (not
//     even a user name), no query and no fragment. An unknown
//     parameter's value is never shown, and url.Parse's error, which
//     quotes the whole URL, is never passed on as it is. A password or
//     token in a URL therefore never reaches an error, a log line or a
//     debug page; registrytest.CheckURLSecrets checks it for a scheme.
//
// registrytest.CheckURLRules checks a backend against these rules.
//
// # Why a feed
//
// gocloud's drivers implement WatchVariable(ctx, prev), a pull the
// portable type calls in a loop. Registries push: a Consul blocking query
// per datacenter, an etcd watch stream, a Kubernetes watch, the memory
// store's change broadcast. Each keeps a cursor (an index, a revision, a
// resourceVersion) and incremental state across reads, and Consul runs
// several at once. A feed lets each stay the loop it naturally is, with
// the contract in one place on the consuming side.
package driver
