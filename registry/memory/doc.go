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
// The store is in the process: no call waits for anything but the
// store's lock, so every call is bounded without a deadline.
//
// Store.SetOutage (or Registry.SetOutage, for one client) makes a store
// behave like an unreachable registry, so that clients' handling of
// registry failures can be exercised for real: every call fails at once
// with a *registry.UnavailableError, which wraps registry.ErrUnavailable
// and the error given to SetOutage, and watchers report it. It names the
// store as its URL ("mem://", "mem://name"; a NewStore store is
// PrivateName), and its Cause is read from that error as a network
// error's would be (driver.Classify): syscall.ECONNREFUSED simulates a
// refused connection (CauseRefused), os.ErrDeadlineExceeded or
// context.DeadlineExceeded a registry that accepts connections and never
// answers (CauseNoAnswer, reported at once: the simulation does not make
// the caller wait out a bound), anything else is CauseUnknown:
//
//	mem://orders: lookup "hello": no answer (...): i/o timeout
//
// # Concurrency
//
// All methods are safe for concurrent use. Watchers use no goroutines: a
// change closes a channel that wakes every pending Next.
package memory
