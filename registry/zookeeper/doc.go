// Package zookeeper is Wayfinder's ZooKeeper registry backend, on a copy
// of github.com/go-zookeeper/zk v1.0.4 with one data race fixed
// (internal/zk, whose doc says why).
//
// Importing it registers the "zk" URL scheme with package registry:
//
//	import _ "github.com/wayfinder-rpc/wayfinder/registry/zookeeper"
//
//	reg, err := registry.Open(ctx, "zk://10.0.0.1:2181,10.0.0.2:2181?root=/wayfinder")
//
// Programs that do not use URLs call New.
//
// # Layout
//
// An instance is an ephemeral node <root>/<service>/<id> (default root
// /wayfinder) under the Registry's session; the root and service nodes
// are persistent. Its data is the JSON of Kratos's ServiceInstance
// ({"id","name","version","metadata","endpoints":["grpc://host:port"]})
// with Wayfinder's other fields beside it ("wayfinder":1, "zone",
// "weight", "tags", "registered"), so that Kratos clients dial Wayfinder
// services, and Wayfinder reads the nodes Kratos's ZooKeeper registry
// writes (root /microservices): see docs/zookeeper.md for each field.
// A node that does not decode, or that names another service or ID than
// its path, is skipped and logged; it never hides the other instances.
//
// Liveness is the session: when it expires (the process died, or was cut
// off for longer than the session timeout), ZooKeeper deletes its nodes.
// A background keeper makes ZooKeeper hold what was registered: after an
// expiry it writes every node again under the new session, it writes
// back its own nodes when someone else deletes them (an existence watch
// on each), and it never gives up (jittered backoff, capped at 3s).
// Deregister deletes the node at once; Close ends the session, which
// deletes the rest.
//
// A watch reads the service node's children with a children watch and
// each child with a data watch; ZooKeeper's watches are one-shot, and
// each event makes the watch read again what changed, which re-arms the
// watch that fired. Nothing is polled.
//
// # URLs
//
//	zk://host1:2181,host2:2181?root=/wayfinder&timeout=5s&session=7500ms
//
// The host lists the servers (default 127.0.0.1:2181). A registry URL
// has no path: in a target the path is the service
// (zk://host:2181/hello?root=/microservices), so the root, which
// ZooKeeper's own connect strings put in the path, is the root
// parameter here. Parameters:
//
//	root     the root node, an absolute path (default /wayfinder)
//	timeout  bound of every call without a deadline (default 5s)
//	session  session timeout asked of the server (default 7.5s)
//
// The query follows the rules every backend shares (see the URLs section
// of registry/driver). Secrets never go in the URL: user information is
// rejected. Digest credentials come from WithDigestAuth or from
// WAYFINDER_ZOOKEEPER_AUTH ("user:password"); the nodes a Registry with
// credentials creates get the ACL "digest user: all, world: read"
// (WithACL changes it).
//
// # Errors
//
// Every call that talks to ZooKeeper is bounded: by the caller's
// deadline, else by the timeout (WithTimeout, ?timeout=, DefaultTimeout
// 5s). The client library's requests have no deadline, so each runs in
// a goroutine the Registry owns, which ends when the server answers,
// when the client drops the connection, or at Close. A watch reports a
// server that stops answering when the client drops its connection:
// after two thirds of the session timeout without a byte (5s with
// DefaultSessionTimeout, which is why that default is 7.5s). A failure
// to use ZooKeeper is a *registry.UnavailableError naming the servers as
// "zk://" and the operation, with its Cause:
//
//	CauseRefused   the last connection attempt was refused, or accepted
//	               and closed before the server said anything; at once
//	CauseNoAnswer  nothing answered within the bound, or the connection
//	               was lost (a frozen server, a partition)
//	CauseServer    ZooKeeper answered with an error; a denial
//	               (zk.ErrNoAuth) also wraps registry.ErrPermissionDenied
//
// Register returns once the node is written. If it returns an error
// first, the instance stays scheduled and the error says so. Deregister
// is idempotent. A caller's cancellation is returned as
// context.Canceled. After Close every method returns registry.ErrClosed.
//
// # Concurrency
//
// A Registry and its Watchers are safe for concurrent use, except that a
// Watcher's Next must not be called concurrently with itself. New, Open
// and Watch never wait for the network. Close stops every goroutine the
// Registry and its client library started and waits for them.
package zookeeper
