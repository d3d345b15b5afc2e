// Package xds is an xDS management server fed by a Wayfinder registry,
// so that proxyless gRPC clients in any language (grpc-go's
// google.golang.org/grpc/xds, grpc-java, Python's grpcio, Node's
// @grpc/grpc-js-xds, C++) can dial "xds:///<service>" and reach the
// instances registered in mem://, Consul, etcd or Kubernetes.
//
// It serves the aggregated discovery service (ADS), State of the World
// and Delta, with these resources for each service a client asks for:
// an API listener named after the service, whose HTTP connection manager
// carries an inline route configuration sending every call to the
// cluster of the same name; that cluster, of type EDS over ADS, round
// robin; and its endpoints, one locality per Instance.Zone weighted by
// its instances' total weight, each endpoint with Instance.Weight as its
// load-balancing weight and HEALTHY. WithCanary splits a service's calls
// by Instance.Version. See docs/xds.md.
//
// # Watches
//
// One upstream watch per service, shared by every client of the server
// (through a resolver.Cache, so that the mass-removal guard applies),
// starts when the first client asks for the service and stops when no
// client asks for it any more.
//
// # Errors
//
// A registry outage never reaches clients as an empty endpoint list: the
// server keeps serving the last good endpoints and logs the outage. A
// service with no instances is served as an empty endpoint list, which
// is what the registry says. A client that rejects a response (a NACK)
// keeps the version it last accepted; the server logs and counts it.
//
// # Concurrency
//
// A Server is safe for concurrent use. Close stops what Serve runs and
// every watch, and waits for them.
package xds
