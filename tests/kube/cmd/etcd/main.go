// Command etcd is upstream etcd's main.go, built from go.etcd.io/etcd/server/v3 at the
// version the pinned k8s.io/kubernetes requires, for the test suite (tests/kube/build.sh).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
