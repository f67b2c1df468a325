"""Fixtures shared by the unit and end-to-end suites."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.kube
from reconciler import contract
from tests import gitrepo, realcluster


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
    with realcluster.running(tmp_path_factory.mktemp("real-cluster")) as server:
        yield server


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say once, at the end, when the real-cluster half of the suite did not run."""
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if "real kube-apiserver not built" in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"NOTE: the real-cluster half was skipped ({len(skipped)} tests): the real "
            "kube-apiserver is not built. Run `python -m tests.kube build` (needs Go), or "
            ".ci/run, to include it.", yellow=True, bold=True)
