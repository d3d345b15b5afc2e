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
// [New] rejects an invalid service name ([registry.ErrInvalidService]);
// [Server.Start] returns a listen failure, [ErrStarted], and an instance
// the registry refuses ([registry.ErrInvalidInstance]), but not a
// registry that is down: it serves and keeps registering in the
// background, logging each failed attempt. [Server.Stop] returns a
// failed deregistration and a serve error, joined, after doing every
// step. Each error is handled once: returned or logged, never both.
//
// # Concurrency
//
// Start and Stop may be called from different goroutines; Stop is
// idempotent. The background registration retry is owned by the Server
// and ends in Stop.
package server
