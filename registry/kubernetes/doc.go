// Package kubernetes is Wayfinder's backend on the Kubernetes API: it
// discovers the endpoints of Services from their EndpointSlices, and
// registers instances outside Pods as EndpointSlices of its own.
//
// It is a Go module of its own, so that programs that do not import it
// never build or download client-go.
//
// # URLs
//
// Importing the package registers the "kubernetes" scheme:
//
//	kubernetes:///hello                  Service hello in the default namespace
//	kubernetes:///hello.prod?port=grpc   Service hello in namespace prod, port "grpc"
//	kubernetes:///hello?port=50051       the Service port numbered 50051
//
// A target's service is <service> or <service>.<namespace>. The URL has
// no host: the API server and credentials come from client-go's rules
// (KUBECONFIG, ~/.kube/config, or the in-cluster configuration of a
// Pod), never from the URL. Parameters: namespace (of names that give
// none; default the kubeconfig context's, or the Pod's), port (a Service
// port name or number; required when the Service has several), context
// (a kubeconfig context), timeout (see Bounds) and ttl (how long a
// registration outlives its registrant; see Register).
// The query follows the rules every backend shares (see the URLs section
// of registry/driver): durations such as ttl=30s, and ';', a parameter
// without a value or with an empty one (?ttl=), a repeated or an unknown
// parameter is an error that names it.
//
// # What is read
//
// All EndpointSlices labelled kubernetes.io/service-name=<service> are
// merged; an address in two slices counts once. Ready endpoints are
// used. Serving and terminating endpoints are used only when no endpoint
// is ready, as a last resort; endpoints that are not serving are never
// used. An endpoint's zone is the instance's Zone; its first address and
// the slice's port of the chosen name make the instance's Address, which
// is also its ID. A Service's labels LabelVersion and LabelWeight, which
// the EndpointSlice controller copies to its slices, give the Version
// and the Weight. On the slices that Register writes, an annotation
// (AnnotationInstance) carries the ID, version, weight, tags and
// metadata, and its liveness: the registrant renews the slice every
// TTL/3 and readers drop an endpoint not renewed for a TTL.
//
// Every instance read is checked with driver.Sanitize, as every
// backend's is: a field that Instance.Validate rejects (a weight label
// that is not a number, a tag or a metadata pair in the annotation) is
// dropped, the instance kept with that field's default; an endpoint
// whose ID or address is rejected is left out. Each is logged once and
// listed by FieldProblems (registry.FieldProblemReporter), named as the
// backend found it (labels[wayfinder-rpc.github.io/weight],
// annotations[wayfinder-rpc.github.io/instance].tags).
//
// Services (registry.ServiceLister) lists the Services of the Registry's
// namespace that have a live endpoint. Status (registry.StatusReporter)
// reports each registration: registered, or retrying while its renewals
// fail, and how often its slice was written again after being deleted.
// WithMeterProvider records the Registry's metrics.
//
// # Bounds
//
// Every call that talks to the API server is bounded by its context's
// deadline, else by the timeout (WithTimeout, DefaultTimeout, 5 s):
// Register, Deregister and Lookup called with context.Background()
// return within 5 s whatever the server does, even if it accepts
// connections and never answers. The same bound applies to each renewal
// request and each list of a watch. A watch whose server says nothing
// for twice the timeout (10 s), not even to the GET /version the
// Registry sends after half of that, ends; Next reports it and the watch
// lists again. A Register that failed is not retried: call it again.
//
// # Errors
//
// Every error from the API server is a *registry.UnavailableError, which
// wraps registry.ErrUnavailable, so the resolver keeps the last good
// set. It names the server as kubernetes://host:port (the REST config's
// host without scheme, credentials or path) and the request, and says
// why (its Cause): CauseRefused (nothing listens), CauseNoAnswer (no
// answer within the bound, which it gives), CauseNotRegistry (an answer
// no API server gives: a web page, plain text, a 404 that is not a
// Status: a wrong address or port), CauseServer (a Status error of the
// server's own: a Service that does not exist also wraps
// ErrServiceNotFound, a denial (RBAC) registry.ErrPermissionDenied). A
// port that cannot be chosen wraps ErrPort and registry.ErrUnavailable.
// None is ever reported as an empty set. A Service that exists without
// endpoints is an empty set. A cancelled context is returned as it is.
//
// # Concurrency
//
// A Registry is safe for concurrent use. Each Watch runs one goroutine
// that lists, then watches with bookmarks from the list's
// resourceVersion; a watch the server ends resumes from the last
// resourceVersion, and a "410 Gone" lists again and publishes the
// difference. Close stops them all and waits.
package kubernetes
