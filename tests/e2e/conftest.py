"""End-to-end fixtures: a running API server, the real adapter, real Git, the real CLI.

Every cluster-facing test takes `any_cluster`, which runs it against:
* `local`: the embedded local cluster, fresh for each test;
* `real`: a real kube-apiserver + etcd + controller manager built from the pinned
  Kubernetes release (tests/kube), one per session, skipped when not built;
* `external`: the cluster of RECONCILER_TEST_KUBECONFIG, when that is set.

On each, `requests()` lists the API requests served (the local cluster's request log, the
real server's audit log; none for an external cluster) and `faults` injects faults (the
local cluster's own hook, or a fault proxy in front of any other server).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest

import tests.kube
from reconciler import cluster as ports
from reconciler import contract, errors, kube, localcluster
from reconciler.localcluster import controllers, requestlog
from reconciler.site import pipeline, state
from tests import faultproxy
from tests.e2e import audit

SITE = "edge-sfo-01"
SITE_NAMESPACE = "sfo-ran"


SITE_KINDS = (("telco.example.com/v1alpha1", "NetworkFunction"),
              ("telco.example.com/v1alpha1", "WorkloadCluster"),
              ("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "Namespace"))


@dataclasses.dataclass(frozen=True)
class Mark:
    """A point to compare with later: a time, and (without a request log) the objects."""

    time: float
    fingerprints: dict[str, str] | None


@dataclasses.dataclass
class ClusterUnderTest:
    """A cluster under test: how to reach it, what it served, and how to make it fail."""

    name: str
    kubeconfig: Path  # what the reconciler uses (through the fault proxy once faults are on)
    local: localcluster.LocalCluster | None = None
    direct_kubeconfig: Path | None = None  # what kubectl uses: never through the proxy
    audit_log: Path | None = None
    since: float = 0.0  # requests before this belong to earlier tests
    _proxy: faultproxy.FaultProxy | None = None
    _stack: contextlib.ExitStack = dataclasses.field(default_factory=contextlib.ExitStack)

    def __post_init__(self) -> None:
        self.direct_kubeconfig = self.direct_kubeconfig or self.kubeconfig

    @property
    def has_request_log(self) -> bool:
        return self.local is not None or self.audit_log is not None

    def requests(self, since: float | None = None) -> list[requestlog.RequestRecord]:
        """The requests served since `since` (default: since this test began)."""
        start = self.since if since is None else since
        if self.local is not None:
            records = self.local.requests
        elif self.audit_log is not None:
            records = audit.read(self.audit_log)
        else:
            raise AssertionError(f"the {self.name} cluster keeps no request log")
        return [r for r in records if r.time >= start]

    def writes(self, since: float | None = None) -> list[requestlog.RequestRecord]:
        """Requests that could change an object, other than the simulated controllers'.

        Dry runs are left out, and so are writes to the status subresource: only the
        simulated controllers write status, never the reconciler.
        """
        return [r for r in self.requests(since)
                if r.verb in ("create", "update", "patch", "delete") and not r.dry_run
                and not r.path.endswith("/status")]

    def mark(self) -> Mark:
        """Remember now, to ask `changed_since()` later."""
        return Mark(time=time.time(),
                    fingerprints=None if self.has_request_log else self._fingerprints())

    def changed_since(self, mark: Mark) -> list[str]:
        """What the reconciler wrote since `mark`: the write requests where the cluster
        logs requests, else the site's objects whose content (status aside) changed."""
        if mark.fingerprints is None:
            return [f"{r.verb} {r.path}" for r in self.writes(mark.time)]
        after = self._fingerprints()
        return sorted(key for key in set(mark.fingerprints) | set(after)
                      if mark.fingerprints.get(key) != after.get(key))

    def _fingerprints(self) -> dict[str, str]:
        adapter = kube.connect(kubeconfig=self.direct_kubeconfig)
        found: dict[str, str] = {}
        try:
            for api_version, kind in SITE_KINDS:
                try:
                    items = adapter.list(api_version=api_version, kind=kind,
                                         label_selector=f"{contract.LABEL_SITE}={SITE}")
                except errors.NotFoundError:
                    continue
                for item in items:
                    item.pop("status", None)
                    for key in ("resourceVersion", "managedFields"):
                        item["metadata"].pop(key, None)
                    found[str(ports.ObjectRef.of(item))] = json.dumps(item, sort_keys=True)
        finally:
            adapter.close()
        return found

    @property
    def faults(self) -> localcluster.FaultSet:
        """Where to add faults. For a non-local cluster this puts a fault proxy between the
        reconciler and the server from now on."""
        if self.local is not None:
            return self.local.faults
        if self._proxy is None:
            assert self.direct_kubeconfig is not None
            self._proxy = self._stack.enter_context(
                faultproxy.FaultProxy.for_kubeconfig(self.direct_kubeconfig))
            self.kubeconfig = self._proxy.write_kubeconfig(
                self.direct_kubeconfig.parent / "through-proxy.kubeconfig")  # type: ignore[union-attr]
        return self._proxy.faults

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def local_cluster(tmp_path: Path) -> Iterator[ClusterUnderTest]:
    """A fresh embedded local cluster for one test."""
    with localcluster.LocalCluster(ready_delay=0.2) as server:
        kubeconfig = tmp_path / "kubeconfig"
        server.write_kubeconfig(kubeconfig)
        target = ClusterUnderTest(name="local", kubeconfig=kubeconfig, local=server,
                                  since=time.time())
        yield target
        target.close()


def _external() -> list[Any]:
    path = os.environ.get("RECONCILER_TEST_KUBECONFIG")
    return [pytest.param(Path(path), id="external")] if path else []


@pytest.fixture(params=["local", "real", *_external()])
def any_cluster(request: pytest.FixtureRequest) -> Iterator[ClusterUnderTest]:
    """The test's cluster: local, real, and external when RECONCILER_TEST_KUBECONFIG is set."""
    if request.param == "local":
        yield request.getfixturevalue("local_cluster")
        return
    if request.param == "real":
        server: tests.kube.RealCluster = request.getfixturevalue("real_cluster")
        target = ClusterUnderTest(name="real", kubeconfig=server.kubeconfig,
                                  audit_log=server.audit_log)
    else:
        target = ClusterUnderTest(name="external", kubeconfig=request.param)
        _simulate_controllers(target)
    _cleanup(target)
    target.since = time.time()
    try:
        yield target
    finally:
        target.close()
        _cleanup(target)


def _simulate_controllers(target: ClusterUnderTest) -> None:
    """Run the simulated controllers against an external cluster for this test: nothing
    else there brings the sample's WorkloadClusters and NetworkFunctions to Ready."""
    stop = threading.Event()
    api = kubernetes.config.new_client_from_config(config_file=str(target.kubeconfig))
    sims = controllers.SimulatedControllers(api_client=api, ready_delay=0.2, stop=stop)
    sims.start()
    target._stack.callback(api.close)
    target._stack.callback(sims.stop)
    target._stack.callback(stop.set)


def _cleanup(target: ClusterUnderTest) -> None:
    """Remove what the tests apply, so runs on a shared cluster start clean."""
    adapter = kube.connect(kubeconfig=target.direct_kubeconfig)
    try:
        for site in (SITE, "adapter-test"):
            for api_version, kind in SITE_KINDS:
                try:
                    found = adapter.list(api_version=api_version, kind=kind,
                                         label_selector=f"{contract.LABEL_SITE}={site}")
                except errors.NotFoundError:
                    continue  # the kind's CRD is not installed yet
                for obj in found:
                    adapter.delete(ports.ObjectRef.of(obj))
        # A real namespace terminates while its controller empties it: wait it out.
        deadline = time.monotonic() + 60
        namespace = ports.ObjectRef("v1", "Namespace", None, SITE_NAMESPACE)
        while adapter.get(namespace) is not None:
            assert time.monotonic() < deadline, f"namespace {SITE_NAMESPACE} did not go away"
            threading.Event().wait(0.2)
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
        self.options = pipeline.Options(url=remote_url, site=site, cache_dir=root / "cache")

    def sync(self) -> pipeline.SyncResult:
        adapter = kube.connect(kubeconfig=self.target.kubeconfig)
        try:
            with self.store.lock():
                return pipeline.sync_once(options=self.options, store=self.store,
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
    """Real kubectl against the cluster (never through the fault proxy), with a discovery
    cache of its own: kubectl keys the default one by host:port, and a port reused by a
    later test's cluster would otherwise be shown stale discovery."""
    assert target.direct_kubeconfig is not None
    cache = target.direct_kubeconfig.parent / "kubectl-cache"
    return subprocess.run(["kubectl", "--kubeconfig", str(target.direct_kubeconfig),
                           "--cache-dir", str(cache), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def kubectl(target: ClusterUnderTest, *args: str) -> Any:
    """Real kubectl that must succeed; JSON output decoded."""
    done = kubectl_run(target, *args)
    if done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
    return json.loads(done.stdout) if "-o" in args and "json" in args else done.stdout


def wait_until_ready(target: ClusterUnderTest, *, timeout: float = 30.0) -> None:
    """Until every WorkloadCluster and NetworkFunction of the site reports Ready=True."""
    deadline = time.monotonic() + timeout
    while True:
        items = [item for kind in ("workloadclusters", "networkfunctions")
                 for item in kubectl(target, "get", kind, "-n", SITE_NAMESPACE, "-o",
                                     "json")["items"]]
        ready = [any(c.get("type") == "Ready" and c.get("status") == "True"
                     for c in (i.get("status") or {}).get("conditions", [])) for i in items]
        if items and all(ready):
            return
        assert time.monotonic() < deadline, "objects did not become Ready"
        threading.Event().wait(0.1)
