// Command kube-apiserver is the Kubernetes API server, built from the Go
// module proxy and used only by Wayfinder's tests and benchmarks of the
// Kubernetes backend. No controller-manager runs next to it: the tests write
// EndpointSlices themselves, as the EndpointSlice controller would.
//
// It lives in its own module so that the Kubernetes dependency graph never
// enters Wayfinder's go.mod.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
