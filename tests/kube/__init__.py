"""A real Kubernetes API server for the test suite: build it once, start it in seconds.

Used by tests/kube/conftest.py (the ``real_cluster`` fixture) and ``python -m tests.kube``.
build() compiles kube-apiserver, kube-controller-manager and etcd from the release pinned
in tests/kube/go.mod into a cache outside the repository; running() starts them on
loopback and yields a RealCluster with a kubeconfig for an admin token.
"""

from tests.kube._binaries import (
    BuildError,
    available,
    build,
    built,
    kubernetes_version,
)
from tests.kube._cluster import RealCluster, StartError, running

__all__ = [
    "BuildError",
    "RealCluster",
    "StartError",
    "available",
    "build",
    "built",
    "kubernetes_version",
    "running",
]
