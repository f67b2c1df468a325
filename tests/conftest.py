"""Fixtures shared by the unit and end-to-end suites."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.config
import pytest

import tests.kube
from reconciler import contract
from reconciler.localcluster import controllers
from tests import gitrepo
from tests.e2e import audit


@pytest.fixture
def remote(tmp_path: Path) -> gitrepo.GitRemote:
    """A bare Git remote holding the sample repository as its first commit."""
    repo = gitrepo.GitRemote(tmp_path / "git")
    repo.copy_from(contract.sample_repo_dir())
    repo.commit_and_push("Baseline intents for edge-sfo-01 and edge-nyc-02")
    return repo


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tests.kube.RealCluster]:
    """A real etcd + kube-apiserver + controller manager for the session, writing an audit
    log, with the simulated controllers running against it as clients.

    Skipped, not built, when the binaries are missing: a cold build takes about ten
    minutes, so `.ci/run` builds them (`python -m tests.kube build`) before pytest starts.
    """
    if not tests.kube.built():
        pytest.skip("real kube-apiserver not built: run `python -m tests.kube build` "
                    "(needs Go; .ci/run does it) to test against a real API server too")
    workdir = tmp_path_factory.mktemp("real-cluster")
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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say once, at the end, when the real-cluster half of the suite did not run."""
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if "real kube-apiserver not built" in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"NOTE: the real-cluster half was skipped ({len(skipped)} tests): the real "
            "kube-apiserver is not built. Run `python -m tests.kube build` (needs Go), or "
            ".ci/run, to include it.", yellow=True, bold=True)
