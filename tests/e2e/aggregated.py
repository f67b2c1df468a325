"""An API group version the cluster lists but cannot serve, on every cluster under test.

On a real server: a real `APIService` for `v1beta1.metrics.k8s.io` whose Service does not
exist, so kube-apiserver's aggregator lists `metrics.k8s.io` in `/apis` and answers 503
(`service unavailable`, plain text) for its discovery document, as it does when
metrics-server is applied but not running. On the local cluster, which serves no
APIService: its fault hook that does the same (`FaultSet.make_unavailable()`).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import ClusterUnderTest, kubectl_run

METRICS = "metrics.k8s.io/v1beta1"
APISERVICE_NAME = "v1beta1.metrics.k8s.io"
APISERVICE = """\
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.metrics.k8s.io
spec:
  group: metrics.k8s.io
  version: v1beta1
  service:
    name: metrics-server-not-running
    namespace: kube-system
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
"""


@contextlib.contextmanager
def unavailable_metrics(target: ClusterUnderTest) -> Iterator[None]:
    """`metrics.k8s.io/v1beta1` listed but answering 503 while the block runs; afterwards
    the cluster is as it was."""
    if target.local is not None:
        target.local.faults.make_unavailable(METRICS)
        try:
            yield
        finally:
            target.local.faults.make_available(METRICS)
        return
    if kubectl_run(target, "get", "apiservice", APISERVICE_NAME).returncode == 0:
        pytest.skip(f"the {target.name} cluster has an APIService {APISERVICE_NAME} "
                    "(metrics-server?): it is not replaced")
    assert target.direct_kubeconfig is not None
    manifest = target.direct_kubeconfig.parent / "apiservice.yaml"
    manifest.write_text(APISERVICE)
    created = kubectl_run(target, "apply", "-f", str(manifest))
    assert created.returncode == 0, created.stderr
    try:
        # The aggregator lists the group at once and proxies to the missing Service: 503.
        _wait(lambda: _listed(target) and _answer(target) == 503,
              what=f"{METRICS} to be listed and answer 503")
        yield
    finally:
        kubectl_run(target, "delete", "apiservice", APISERVICE_NAME, "--ignore-not-found")
        _wait(lambda: not _listed(target), what=f"{METRICS} to leave discovery")


def _listed(target: ClusterUnderTest) -> bool:
    done = kubectl_run(target, "get", "--raw", "/apis")
    groups = json.loads(done.stdout).get("groups", []) if done.returncode == 0 else []
    return any(v.get("groupVersion") == METRICS for g in groups for v in g.get("versions", []))


def _answer(target: ClusterUnderTest) -> int:
    done = kubectl_run(target, "get", "--raw", f"/apis/{METRICS}")
    if done.returncode == 0:
        return 200
    return 503 if "ServiceUnavailable" in done.stderr else 0


def _wait(check: Callable[[], bool], *, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout:.0f}s for {what}"
        threading.Event().wait(0.2)
