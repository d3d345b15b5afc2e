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
// watchers so that closing the Registry closes them.
//
// A new backend is then three things: what talks to its registry, a URL
// opener that calls ValidateURL, and a harness for
// registrytest.RunConformanceTests, which runs the contract's success and
// error halves against a real server.
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
