"""End-to-end fixtures: a running API server, the real adapter, real Git, the real CLI.

Every test here runs against the embedded local cluster. When RECONCILER_TEST_KUBECONFIG
names a kubeconfig, the tests marked `any_cluster` run against that cluster too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import cluster as ports
from reconciler import contract, kube, localcluster, reconcile, state

SITE = "edge-sfo-01"


@dataclasses.dataclass
class ClusterUnderTest:
    """A cluster under test: how to reach it, and its request log where it keeps one."""

    name: str
    kubeconfig: Path
    local: localcluster.LocalCluster | None = None

    def requests(self, since: float = 0.0) -> list[Any]:
        assert self.local is not None, "only the local cluster keeps a request log"
        return [r for r in self.local.requests if r.time >= since]

    def writes(self, since: float = 0.0) -> list[Any]:
        """Requests that could change an object, other than the simulated controllers'.

        Dry runs are left out, and so are writes to the status subresource: only the
        simulated controllers write status, never the reconciler.
        """
        return [r for r in self.requests(since)
                if r.verb in ("create", "update", "patch", "delete") and not r.dry_run
                and not r.path.endswith("/status")]


@pytest.fixture
def local_cluster(tmp_path: Path) -> Iterator[ClusterUnderTest]:
    """A fresh embedded local cluster for one test."""
    with localcluster.LocalCluster(ready_delay=0.2) as server:
        kubeconfig = tmp_path / "kubeconfig"
        server.write_kubeconfig(kubeconfig)
        yield ClusterUnderTest(name="local", kubeconfig=kubeconfig, local=server)


def _external() -> list[Any]:
    path = os.environ.get("RECONCILER_TEST_KUBECONFIG")
    return [pytest.param(Path(path), id="external")] if path else []


@pytest.fixture(params=["local", *_external()])
def any_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClusterUnderTest]:
    """The local cluster, and the cluster of RECONCILER_TEST_KUBECONFIG when it is set."""
    if request.param == "local":
        yield request.getfixturevalue("local_cluster")
        return
    external = ClusterUnderTest(name="external", kubeconfig=request.param)
    _cleanup(external)
    yield external
    _cleanup(external)


def _cleanup(target: ClusterUnderTest) -> None:
    """Delete what the sample site applies, so runs on a shared cluster start clean."""
    adapter = kube.connect(kubeconfig=target.kubeconfig)
    try:
        selector = f"{contract.LABEL_SITE}={SITE}"
        for api_version, kind in (("telco.example.com/v1alpha1", "NetworkFunction"),
                                  ("telco.example.com/v1alpha1", "WorkloadCluster"),
                                  ("v1", "ConfigMap"), ("v1", "Namespace")):
            try:
                objects = adapter.list(api_version=api_version, kind=kind,
                                       label_selector=selector)
            except Exception:
                continue
            for obj in objects:
                adapter.delete(ports.ObjectRef.of(obj))
    finally:
        adapter.close()


class Site:
    """One site reconciler, driven in-process through the real adapter."""

    def __init__(self, *, root: Path, remote_url: str, target: ClusterUnderTest,
                 site: str = SITE) -> None:
        self.root = root
        self.url = remote_url
        self.target = target
        self.site = site
        self.state_dir = root / "state"
        self.store = state.FileStateStore(state_dir=self.state_dir, site=site)
        self.options = reconcile.Options(url=remote_url, site=site, cache_dir=root / "cache")

    def sync(self) -> reconcile.SyncResult:
        adapter = kube.connect(kubeconfig=self.target.kubeconfig)
        try:
            with self.store.lock():
                return reconcile.sync_once(options=self.options, store=self.store,
                                           target=adapter)
        finally:
            adapter.close()

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the real `reconciler` command line in a subprocess."""
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args], capture_output=True, text=True,
            timeout=120, check=False,
            env={**os.environ, "KUBECONFIG": str(self.target.kubeconfig)},
        )
        if check and done.returncode != 0:
            raise AssertionError(f"reconciler {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    def sync_cli(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.cli("sync", "--repo", self.url, "--site", self.site,
                        "--state-dir", str(self.state_dir), "--cache-dir",
                        str(self.root / "cache"), *extra)


def kubectl_run(target: ClusterUnderTest, *args: str) -> subprocess.CompletedProcess[str]:
    """Real kubectl against the cluster, with a discovery cache of its own.

    kubectl keys its default cache by host:port, and a port reused by a later test's
    cluster would otherwise be shown stale discovery.
    """
    cache = target.kubeconfig.parent / "kubectl-cache"
    return subprocess.run(["kubectl", "--kubeconfig", str(target.kubeconfig),
                           "--cache-dir", str(cache), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def kubectl(target: ClusterUnderTest, *args: str) -> Any:
    """Real kubectl that must succeed; JSON output decoded."""
    done = kubectl_run(target, *args)
    if done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
    return json.loads(done.stdout) if "-o" in args and "json" in args else done.stdout
