"""Fixtures for the local cluster tests: a running cluster, real clients, raw HTTP, kubectl."""

from __future__ import annotations

import dataclasses
import http.client
import json
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes import dynamic

from reconciler import localcluster
from reconciler.localcluster import kubeconfig
from tests.localcluster import crds

KUBECTL = shutil.which("kubectl")


@dataclasses.dataclass(frozen=True)
class Reply:
    """A raw HTTP answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


class Raw:
    """Plain HTTP to the cluster, for exact codes, headers and bodies."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80

    def request(self, method: str, path: str, body: Any = None, *,
                content_type: str = "application/json",
                headers: dict[str, str] | None = None, timeout: float = 10.0) -> Reply:
        """Send one request; dict and list bodies are sent as JSON."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            payload = body
            if isinstance(body, dict | list):
                payload = json.dumps(body)
            all_headers = {"Content-Type": content_type,
                           "Authorization": f"Bearer {kubeconfig.TOKEN}", **(headers or {})}
            conn.request(method, path, body=payload, headers=all_headers)
            response = conn.getresponse()
            return Reply(status=response.status,
                         headers={k.lower(): v for k, v in response.getheaders()},
                         body=response.read())
        finally:
            conn.close()

    def apply(self, path: str, body: Any, *, manager: str | None = "test",
              force: bool = False, dry_run: bool = False) -> Reply:
        """A server-side apply PATCH."""
        query = {}
        if manager is not None:
            query["fieldManager"] = manager
        if force:
            query["force"] = "true"
        if dry_run:
            query["dryRun"] = "All"
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return self.request("PATCH", path + suffix, body,
                            content_type="application/apply-patch+yaml")


@dataclasses.dataclass(frozen=True)
class Kubectl:
    """Runs the real kubectl against the cluster."""

    kubeconfig: Path

    def __call__(self, *args: str, stdin: str | None = None,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl; raise with its stderr when check and it failed."""
        if KUBECTL is None:
            pytest.skip("kubectl is not installed")
        result = subprocess.run([KUBECTL, "--kubeconfig", str(self.kubeconfig),
                                 "--cache-dir", str(self.kubeconfig.parent / "kube-cache"), *args],
                                input=stdin, capture_output=True, text=True, timeout=60,
                                check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        """Run kubectl with `-o json` and parse the answer."""
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture
def cluster() -> Iterator[localcluster.LocalCluster]:
    """A local cluster without the simulated controllers."""
    with localcluster.LocalCluster(controllers=False) as server:
        yield server


@pytest.fixture
def live_cluster() -> Iterator[localcluster.LocalCluster]:
    """A local cluster whose simulated controllers turn objects Ready after 0.3 s."""
    with localcluster.LocalCluster(ready_delay=0.3) as server:
        yield server


@pytest.fixture
def raw(cluster: localcluster.LocalCluster) -> Raw:
    """Raw HTTP to the cluster fixture."""
    return Raw(cluster.url)


@pytest.fixture
def api_client(cluster: localcluster.LocalCluster) -> Iterator[kubernetes.client.ApiClient]:
    """The official client, configured from the cluster's URL."""
    configuration = kubernetes.client.Configuration(host=cluster.url)
    configuration.api_key["BearerToken"] = f"Bearer {kubeconfig.TOKEN}"
    client = kubernetes.client.ApiClient(configuration)
    yield client
    client.close()


@pytest.fixture
def dyn(api_client: kubernetes.client.ApiClient, tmp_path: Path) -> dynamic.DynamicClient:
    """A dynamic client with its own discovery cache file."""
    return dynamic.DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))


@pytest.fixture
def kubectl(cluster: localcluster.LocalCluster, tmp_path: Path) -> Kubectl:
    """kubectl with a kubeconfig written by the cluster."""
    return Kubectl(kubeconfig=cluster.write_kubeconfig(tmp_path / "kubeconfig"))


def install_crds(raw: Raw) -> None:
    """Apply the test CRDs through the API."""
    for crd in (crds.WORKLOAD_CLUSTER_CRD, crds.NETWORK_FUNCTION_CRD):
        name = crd["metadata"]["name"]
        reply = raw.apply(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", crd,
                          manager="test")
        assert reply.status in (200, 201), reply.body


@pytest.fixture
def telco(raw: Raw) -> Raw:
    """The cluster fixture with the WorkloadCluster and NetworkFunction CRDs installed."""
    install_crds(raw)
    return raw


def wait_for(predicate: Callable[[], Any], *, timeout: float = 10.0,
             interval: float = 0.05) -> Any:
    """Poll until predicate returns something truthy; fail the test after timeout."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        pause.wait(interval)


WC_PATH = f"/apis/{crds.API_VERSION}/namespaces/default/workloadclusters"
NF_PATH = f"/apis/{crds.API_VERSION}/namespaces/default/networkfunctions"
CM_PATH = "/api/v1/namespaces/default/configmaps"
