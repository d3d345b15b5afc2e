// Package zk is github.com/go-zookeeper/zk v1.0.4 (BSD 3-Clause, see
// LICENSE), the files of its package zk without their tests, with one
// change: Conn.lastZxid is an atomic.Int64.
//
// Why a copy: the library reads lastZxid in sendSetWatches while its
// receive loop writes it, after a reconnect that kept the session and
// its watches. `go test -race` reports it (seen in Wayfinder's CI, the
// harness's ZooKeeper outage); upstream knows it
// (samuel/go-zookeeper#178 and #260, go-zookeeper/zk#35, open since
// 2020) and has no release with a fix. Everything else is upstream's
// code as released, but for lock.go and flw.go (the Lock recipe and the
// four-letter-word client, which Wayfinder does not use); staticcheck's
// findings in it are upstream's (lint:file-ignore in each file), not
// fixed here. Drop this copy for the
// upstream module once a release fixes the race.
package zk
