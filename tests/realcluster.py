"""The real cluster as the suites run it: etcd, kube-apiserver and the controller manager
writing an audit log, with the simulated controllers running against it as clients. Used
by the `real_cluster` fixture (tests/conftest.py) and by benchmarks/crash.py."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import kubernetes.config

import tests.kube
from reconciler.localcluster import controllers
from tests.e2e import audit


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[tests.kube.RealCluster]:
    """The real cluster in `workdir`, its audit policy `tests/e2e/audit.py`'s, the
    simulated controllers on; everything stopped on exit."""
    policy = workdir / "audit-policy.yaml"
    policy.write_text(audit.POLICY)
    with tests.kube.running(workdir=workdir, audit_policy=policy,
                            audit_log=workdir / "audit.jsonl") as server:
        stop = threading.Event()
        api = kubernetes.config.new_client_from_config(config_file=str(server.kubeconfig))
        sims = controllers.SimulatedControllers(api_client=api, ready_delay=0.2, stop=stop)
        sims.start()
        try:
            yield server
        finally:
            stop.set()
            sims.stop()
            api.close()
