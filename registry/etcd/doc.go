// Package etcd is Wayfinder's etcd registry backend.
//
// Importing it registers the "etcd" URL scheme with package registry:
//
//	import _ "github.com/wayfinder-rpc/wayfinder/registry/etcd"
//
//	reg, err := registry.Open(ctx, "etcd://10.0.0.1:2379,10.0.0.2:2379")
//
// Programs that do not use URLs call New or NewFromClient.
//
// # Layout
//
// An instance is stored at <prefix>/<service>/<id> (default prefix
// /wayfinder/services) as etcd's own gRPC naming value
// ({"Op":0,"Addr":"host:port","Metadata":{"wayfinder":1,...}}), so that
// clients on go.etcd.io/etcd/client/v3/naming/resolver dial Wayfinder
// services; WithFormat(FormatV1) writes the older {"v":1,"id":...} value.
// Both are read, and so are the entries etcd's endpoints.Manager writes:
// its target "foo/bar/hello" is service "hello" under prefix "foo/bar".
// An optional field that is malformed drops only that field; it is
// reported once (FieldProblems, Stats, a Warn log). All the
// instances a Registry registers share one lease, kept alive by one
// KeepAlive stream, so the cost of keepalives does not grow with the
// number of instances. A background keeper makes etcd match what was
// registered: on lease loss it grants a new lease and writes everything
// again, it puts back its own keys when someone else deletes them, and it
// never gives up (jittered backoff, capped at 3 s). LeaseState shows its
// progress and its last error. Deregister deletes the key at once, and the
// lease is revoked when no instance is left.
//
// Watchers list the service with a prefix Get ("<prefix>/<service>/", with
// the trailing slash, so "hello" never matches "hello-x") and follow it with
// a watch from the listing's revision + 1, opened WithRequireLeader so that
// a member cut off from its cluster ends the watch instead of hanging. A
// compacted revision leads to a new listing; other failures resume the
// watch, or report registry.ErrUnavailable and list again when the
// connection is back. A watch that hears nothing from etcd for the
// liveness bound (WithUnavailableAfter, DefaultUnavailableAfter) reports
// registry.ErrUnavailable whatever the connection's state, and lists again.
// A value that does not decode, or that names another
// service or ID than its key, is skipped and logged with its key; it never
// hides the other instances.
//
// # URLs
//
//	etcd://host1:2379,host2:2379?prefix=/wayfinder/services&ttl=10s&timeout=5s&tls=true
//
// The host lists the endpoints; with no host, ETCDCTL_ENDPOINTS is used,
// then 127.0.0.1:2379. A registry URL has no path; gRPC targets add the
// service as the path (etcd://host:2379/hello). Parameters:
//
//	prefix   key prefix, no trailing slash (default /wayfinder/services);
//	         relative prefixes, "/" and "" serve etcd naming targets
//	ttl      lease TTL, whole seconds, at least 1s (default 10s)
//	timeout  bound of each background request (default 5s)
//	tls      true: use TLS with the system roots when no CA is configured
//
// The query follows the rules every backend shares (see the URLs
// section of registry/driver): tls=true or tls=false, durations such as
// 10s, and ';', a parameter without a value or with an empty one (but
// prefix=), a repeated or an unknown parameter is an error that names
// it. Secrets never go in the URL: user information is rejected. Credentials and certificates come
// from options (WithAuth, WithTLS), which win, or from etcdctl's variables
// ETCDCTL_USER (user or user:password), ETCDCTL_PASSWORD, ETCDCTL_CACERT,
// ETCDCTL_CERT and ETCDCTL_KEY.
//
// # Errors
//
// Every call that talks to etcd is bounded: by the caller's deadline,
// else by the timeout (WithTimeout, ?timeout=, DefaultTimeout 5s). A
// watch's Next reports a cluster that does not answer within the
// liveness bound (WithUnavailableAfter, DefaultUnavailableAfter 10s;
// its checks run every quarter of it), and its listing is bounded by the
// smaller of the two. A failure to use etcd is a *registry.UnavailableError,
// which wraps registry.ErrUnavailable and the etcd client's error (so
// errors.Is works with both, rpctypes.ErrAuthFailed for a wrong
// password; a credentials error, wrong or missing, also wraps
// registry.ErrPermissionDenied). It names the cluster as "etcd://" and the endpoints'
// addresses, and the operation, and its Cause says which failure it is:
//
//	CauseRefused      every endpoint refused the connection, or accepted
//	                  it and closed it before answering; at once
//	CauseNotRegistry  an endpoint answered, but not as etcd (HTTP/1, an
//	                  HTTP status such as 404, a gRPC server without
//	                  etcd's services); at once
//	CauseNoAnswer     nothing answered within the bound (a frozen member,
//	                  a dropped network); at the bound, which it states
//	CauseServer       etcd answered with an error of its own (no leader,
//	                  a denial, bad credentials)
//
// For example:
//
//	etcd://127.0.0.1:2379: lookup "hello": connection refused (is the registry running at that address?): dial tcp 127.0.0.1:2379: connect: connection refused
//	etcd://127.0.0.1:8080: lookup "hello": answered, but not as this kind of registry does (a wrong address or port?): 127.0.0.1:8080 answered "HTTP/1.1 404 Not Found", an HTTP/1 response, not etcd's gRPC
//	etcd://127.0.0.1:2379: lookup "hello": no answer within 5s (...): context deadline exceeded
//
// Refusals and answers that are not etcd's are seen by the client's
// dialer, which New installs; a Registry over NewFromClient's client, or
// one given its own dialer with WithDialOptions, reports those at the
// bound, as no answer.
//
// Register returns once the instance is written. If it returns an error
// first, the instance stays scheduled, and the error says so: the keeper
// writes it when etcd answers, unless Deregister cancels it (a process
// that starts while etcd is down still appears when etcd comes back).
// Credential errors and answers that are not etcd's are returned at once.
// Deregister is idempotent; if it returns an error, the delete stays
// pending and is made when etcd answers. A caller's cancellation is
// returned as context.Canceled, not as ErrUnavailable. After Close every
// method returns registry.ErrClosed.
//
// # Concurrency
//
// A Registry and its Watchers are safe for concurrent use, except that a
// Watcher's Next must not be called concurrently with itself. New, Open
// and Watch never wait for the network. Close stops every goroutine the
// Registry started and waits for them; it does not deregister.
package etcd
