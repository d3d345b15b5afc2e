package registry

import (
	"context"
	"errors"
)

// Sentinel errors. Backends wrap them with %w, so callers test with errors.Is.
var (
	// ErrClosed is returned by a Watcher or Registry after Close.
	ErrClosed = errors.New("registry: closed")
	// ErrUnavailable means the registry could not be reached or answered
	// with something unusable. It is distinct from a service that has zero
	// instances, which is an empty set and no error.
	ErrUnavailable = errors.New("registry: unavailable")
	// ErrInvalidInstance is wrapped by every error from Instance.Validate.
	ErrInvalidInstance = errors.New("registry: invalid instance")
	// ErrInvalidService is returned for a malformed service name.
	ErrInvalidService = errors.New("registry: invalid service name")
	// ErrInvalidURL is wrapped by errors for malformed registry URLs and
	// targets, including unknown query parameters.
	ErrInvalidURL = errors.New("registry: invalid URL")
	// ErrUnknownScheme is returned by Open for a scheme no backend registered.
	ErrUnknownScheme = errors.New("registry: unknown scheme")
	// ErrPermissionDenied is wrapped, together with ErrUnavailable, by
	// errors for requests the registry refused for want of credentials
	// or permission: a missing or under-privileged Consul ACL token,
	// wrong etcd credentials, a Kubernetes RBAC denial. Retrying with the
	// same configuration cannot fix it.
	ErrPermissionDenied = errors.New("registry: permission denied")
)

// Registrar is the server side: it announces and withdraws instances.
type Registrar interface {
	// Register announces inst, or updates it if an instance with the same
	// Service and ID is already registered. It validates inst first and
	// returns an error wrapping ErrInvalidInstance without calling the
	// backend if it is invalid.
	Register(ctx context.Context, inst Instance) error
	// Deregister withdraws the instance with inst.Service and inst.ID.
	// It is idempotent: withdrawing an unknown instance is not an error.
	// It returns when ctx is done, even if the registry is unreachable.
	Deregister(ctx context.Context, inst Instance) error
}

// Discovery is the client side: it lists and watches a service's instances.
type Discovery interface {
	// Lookup returns the current instances of service, sorted by ID.
	// A service with no instances yields an empty slice and a nil error;
	// an unreachable registry yields an error wrapping ErrUnavailable.
	Lookup(ctx context.Context, service string) ([]Instance, error)
	// Watch starts watching service. ctx bounds only the setup; the
	// returned Watcher lives until Close. Watch must not block on the
	// network: connection problems surface from Watcher.Next.
	Watch(ctx context.Context, service string) (Watcher, error)
}

// Watcher follows one service.
//
// Next returns the full current set of instances, sorted by ID. The first
// call returns at once with the current set (which may be empty) or an
// error. Each later call blocks until the set differs from the one it last
// returned, or until an error occurs, or until ctx is done.
//
// An error other than ErrClosed or ctx's error is transient: the watcher
// keeps trying to reach the registry, and the next call to Next returns
// the set as soon as it can be read again, even if it is unchanged, so a
// caller sees the recovery. Errors never come as an empty set.
//
// After Close, Next returns an error wrapping ErrClosed. Close unblocks a
// pending Next. Next and Close may be called concurrently; Next must not
// be called concurrently with itself.
type Watcher interface {
	Next(ctx context.Context) ([]Instance, error)
	Close() error
}

// IndexedWatcher is an optional interface of a Watcher that can say
// where in the registry's history the set it last returned was read: the
// registry's own index or revision, for debug pages and tools. Test for
// it with a type assertion.
//
// Index returns the position of the read that produced the set last
// returned by Next, in the backend's own notation: memory's per-service
// change counter ("7"), etcd's store revision ("1234"), Consul's
// X-Consul-Index ("120"; with several datacenters each datacenter's, in
// the order they were configured: "dc1=120 dc2=87"). It is empty until
// Next has returned a set, and it changes only when Next returns a set:
// an error keeps the index of the last set, as it keeps the set. A set
// that differs from the previous one has a different index. Indexes are
// for display and comparison for equality only: their order and format
// are the backend's.
//
// Index is cheap (no network call) and safe to call concurrently with
// Next and Close, and after Close.
type IndexedWatcher interface {
	Watcher
	Index() string
}

// Registry is a client of one registry in both roles.
type Registry interface {
	Registrar
	Discovery
	// Close releases the client. Watchers opened from it return ErrClosed.
	// Close does not deregister instances: that is the server lifecycle's
	// job, done with Deregister before Close.
	Close() error
}

// HealthFunc reports the health of inst, a registered instance: nil
// while it should receive traffic, an error saying why not otherwise.
// It is the one health callback of every backend and the server
// lifecycle.
type HealthFunc func(ctx context.Context, inst Instance) error

// HealthRegistrar is an optional interface of a Registrar whose
// registrations carry a health check that the registrant must feed, such
// as Consul's TTL checks. The server lifecycle uses it so that the check
// mirrors the server's grpc.health.v1 status instead of always passing.
type HealthRegistrar interface {
	Registrar
	// RegisterWithHealth is Register, with health consulted for every
	// heartbeat of the registration.
	RegisterWithHealth(ctx context.Context, inst Instance, health HealthFunc) error
}

// ServiceLister is an optional interface of a Discovery that can list the
// services it knows, for tools such as the wayfinder command.
type ServiceLister interface {
	// Services returns the names of the services with at least one
	// instance, sorted.
	Services(ctx context.Context) ([]string, error)
}
