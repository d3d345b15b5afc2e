// Package memory is Wayfinder's embedded registry: an in-process backend,
// safe for concurrent use, with the full Watch semantics. It is the
// default of the demo and of the runnable examples, and is useful in
// tests and single-process deployments.
//
// # URLs
//
// "mem://" opens the process-wide default store; "mem://name" opens the
// process-wide store called name. No query parameters are accepted.
// Targets are "mem:///service" and "mem://name/service".
//
// # Errors
//
// Store.SetOutage makes a store behave like an unreachable registry, so
// that clients' handling of registry failures can be exercised for real:
// every call fails with an error wrapping registry.ErrUnavailable.
//
// # Concurrency
//
// All methods are safe for concurrent use. Watchers use no goroutines: a
// change closes a channel that wakes every pending Next.
package memory
