package registry

// RegistrationState is where a Registrar stands with one instance.
type RegistrationState int

const (
	// StateUnknown: the instance is not registered through this
	// Registrar.
	StateUnknown RegistrationState = iota
	// StatePending: the first attempt has not finished.
	StatePending
	// StateRegistered: the registry holds the registration, and its
	// liveness (a Consul TTL check, an etcd lease) was last renewed.
	StateRegistered
	// StateRetrying: the last attempt failed; the Registrar keeps
	// retrying with backoff and registers again as soon as it can.
	StateRetrying
)

func (s RegistrationState) String() string {
	switch s {
	case StatePending:
		return "pending"
	case StateRegistered:
		return "registered"
	case StateRetrying:
		return "retrying"
	}
	return "unknown"
}

// RegistrationStatus describes one instance's registration. Changed is
// closed at the next change, so a caller can wait for one without
// polling.
type RegistrationStatus struct {
	State RegistrationState
	// Err is the last error, nil once an attempt succeeds.
	Err error
	// Registrations counts the successful writes of the registration:
	// more than one means the Registrar wrote it again, after the
	// registry lost it (a Consul agent restart, an expired etcd lease).
	Registrations int
	// Healthy is the last health the Registrar reported to the registry;
	// true for registries without health checks.
	Healthy bool
	Changed <-chan struct{}
}

// StatusReporter is an optional interface of a Registrar that reports
// each instance's registration, for tools, tests and health endpoints
// that want to see a registrant struggle rather than guess. See the
// package doc for the backends that implement it.
type StatusReporter interface {
	Status(inst Instance) RegistrationStatus
}
