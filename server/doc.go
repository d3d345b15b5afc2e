// Package server runs a gRPC server with a correct registry lifecycle:
// register only once serving, and drain before stopping.
//
// The 2019 seed deregistered its servers after they had stopped serving,
// so clients kept sending RPCs to a dead address until the next poll;
// other frameworks drain for a fixed second, or cannot stop while the
// registry is down. Server.Stop instead sets NOT_SERVING, deregisters
// (bounded), waits until the instance is gone from the process's own
// watch view (bounded), and only then stops gracefully. See
// docs/lifecycle.md.
//
// # Errors
//
// [New] rejects a nil registrar and an invalid service name
// ([registry.ErrInvalidService]); [Server.Start] returns a listen
// failure, [ErrStarted] and invalid instance attributes
// ([registry.ErrInvalidInstance]), never a registry's trouble: it waits
// for the first registration attempt, then serves whatever its outcome
// and keeps registering in the background until it succeeds;
// [Server.Registered] says when it did. [Server.Stop] returns a failed
// deregistration and a serve error, joined, after doing every step. Each
// error is handled once: returned or logged, never both.
//
// # Cost
//
// Start costs the listen, a watch's setup and the first registration
// attempt: one round trip to a healthy registry, next to nothing against
// a refused address or something that is not a registry, and at most the
// register timeout (WithRegisterTimeout, default 5s) or ctx, whichever
// ends first, against one that never answers. Stop costs at most the register
// timeout for the deregistration (skipped when no registration can have
// reached the registry), the drain timeout (after a successful one), the
// drain delay and the graceful timeout, each cut short by its context.
// See docs/lifecycle.md for the figures.
//
// # Logging
//
// Without WithLogger, slog.Default() hears what an operator must act on:
// a registration that keeps failing at Warn, the first failure and then
// once a minute (never a line per retry), a recovery at Info, an
// instance the registry refuses at Error. Routine events are Debug.
//
// # Load reports
//
// WithLoadReports serves ORCA load reports (package
// google.golang.org/grpc/orca) in every call's trailer and out of band:
// the process's CPU utilisation, the calls in flight (InFlightMetric), the
// server-wide metrics set on LoadReports(), and in a call's trailer what
// its handler recorded on orca.CallMetricsRecorderFromContext. See
// docs/orca.md.
//
// # Concurrency
//
// Start and Stop may be called from different goroutines; Stop is
// idempotent. The background registration retry is owned by the Server
// and ends in Stop.
package server
