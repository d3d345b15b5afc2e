// Package registry is Wayfinder's portable service-registry API, for the
// people who use registries: the Instance value type, the role-split
// Registrar (servers) and Discovery and Watcher (clients) interfaces,
// Open and a URLMux through which backends (registry/memory,
// registry/consul, registry/etcd, registry/kubernetes in a module of
// its own, and registry/multi, composed of others) are opened, and the
// errors. What
// backends need to be written (scheme registration, the one
// implementation of the watch contract, URL checks) is in
// registry/driver.
//
// # URLs
//
// A registry URL names a registry, not a service: "mem://",
// "consul://127.0.0.1:8500?dc=dc1", "etcd://10.0.0.1:2379,10.0.0.2:2379".
// A target adds the service as the path: "consul://127.0.0.1:8500/orders".
// An unknown scheme or query parameter is an error that lists what is
// accepted. Credentials never travel in URLs: a URL with user information
// is rejected, and backends read secrets from options and their
// ecosystem's environment variables. ValidateURL checks a URL without
// opening anything. Open uses DefaultURLMux, into which imported backends
// register; a URLMux of the program's own holds backends configured
// otherwise (each backend's URLOpener struct has fields such as Logger).
//
// Every backend reads its query by the same rules, kept in one reader in
// registry/driver: parameters are separated by '&' (a ';' is an error),
// each has a value (a bare ?tls or an empty ?ttl= is an error naming the
// parameter and its accepted form), booleans are true or false, durations
// are positive Go durations (30s), and an unknown or repeated parameter
// is an error. Errors wrap ErrInvalidURL and show the URL without user
// information, query or fragment ("consul://127.0.0.1:8500"), so that a
// password put in a URL by mistake is never printed.
//
// # Errors
//
// Errors wrap the sentinels ErrClosed, ErrUnavailable, ErrPermissionDenied,
// ErrInvalidInstance, ErrInvalidService, ErrInvalidURL and ErrUnknownScheme;
// test them with errors.Is. A denial (ErrPermissionDenied) is also
// unavailable, with CauseServer: the registry answered, but not for us. A service with zero instances is an empty set and no error;
// an unreachable registry is an error wrapping ErrUnavailable. The two are
// never confused, and an error never comes as an empty set.
//
// # Optional interfaces
//
// A backend grows through optional interfaces, as database/sql/driver
// does, never by adding methods to Registrar, Discovery or Watcher. Test
// for one with a type assertion on the value Open returns (or on a
// Watcher); every in-tree backend asserts those it has at compile time.
//
//	HealthRegistrar       Registrar  RegisterWithHealth: a health check the server feeds (Consul, multi)
//	StatusReporter        Registrar  Status: one instance's RegistrationStatus (Consul, etcd, Kubernetes, multi)
//	ServiceLister         Discovery  Services: the names of services with instances (memory, Consul, etcd, Kubernetes, multi)
//	FieldProblemReporter  Discovery  FieldProblems: fields a decode dropped (Consul, etcd, Kubernetes, multi)
//	IndexedWatcher        Watcher    Index: the registry's index of the last set (every backend, through driver.Watcher)
//
// driver.LoggerOpener and driver.MuxOpener are the optional interfaces of
// an Opener.
//
// # Concurrency
//
// Registries are safe for concurrent use. A Watcher's Next must not be
// called concurrently with itself, but Close may be called at any time.
package registry
