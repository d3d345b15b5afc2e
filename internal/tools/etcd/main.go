// Command etcd is a build of the etcd server, used only by Wayfinder's tests
// and benchmarks. Tests run it as a separate process so that fault tests can
// kill it or stop it with SIGSTOP.
//
// It lives in its own module so that the etcd server's dependencies never
// enter Wayfinder's go.mod.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
