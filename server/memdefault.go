package server

// The embedded registry is the documented default ("mem://"): importing
// this package makes it work without a blank import of its own, as the
// README and docs/ show. The registry package cannot do this itself,
// since registry/memory imports registry; memory imports nothing beyond
// registry, registry/driver and the standard library.
import _ "github.com/wayfinder-rpc/wayfinder/registry/memory"
