"""The state stores' contract on every cluster under test: the same checks as
tests/unit/test_state_stores.py, the kubernetes store through the real adapter (a real
ConfigMap, real resourceVersions), and the file store beside it; and `status` reading the
kubernetes store."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler import cluster, errors, kube
from reconciler.site import kubestate, lease, state
from tests import gitrepo
from tests.e2e.conftest import SITE, ClusterUnderTest, Site
from tests.unit import test_state_stores as contract

pytestmark = pytest.mark.e2e

NAMESPACE = contract.NAMESPACE


@pytest.fixture
def adapter(any_cluster: ClusterUnderTest) -> Iterator[kube.KubeCluster]:
    """The real adapter, the state namespace made, the test's ConfigMap removed after."""
    target = kube.connect(kubeconfig=any_cluster.kubeconfig)
    target.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    ref = cluster.ObjectRef("v1", "ConfigMap", NAMESPACE,
                            kubestate.object_name(contract.SITE))
    target.delete(ref)
    try:
        yield target
    finally:
        target.delete(ref)
        target.close()


@pytest.mark.parametrize("kind", ["file", "kubernetes"])
@pytest.mark.parametrize("check", contract.CONTRACT,
                         ids=lambda c: c.__name__.removeprefix("check_"))
def test_store_contract_on_a_cluster(kind: str, check: Callable[[contract.Stores], None],
                                     adapter: kube.KubeCluster, tmp_path: Path) -> None:
    """Each store, the kubernetes one on a real API server, holds the same contract."""
    check(contract.make_stores(kind, tmp_path, adapter))


def test_the_configmap_holds_the_file_stores_bytes(adapter: kube.KubeCluster,
                                                    tmp_path: Path) -> None:
    """Read back from the server, state.json is byte for byte the file store's file."""
    s = contract.accepted("i-1", "i-2")
    kubestate.KubeStateStore(target=adapter, namespace=NAMESPACE, site=contract.SITE).save(s)
    file_store = state.FileStateStore(state_dir=tmp_path, site=contract.SITE)
    file_store.save(s)
    live = adapter.get(cluster.ObjectRef("v1", "ConfigMap", NAMESPACE,
                                         kubestate.object_name(contract.SITE)))
    assert live is not None
    assert live["data"]["state.json"] == file_store.path.read_text()


def test_a_state_too_big_is_refused_before_the_server_sees_it(adapter: kube.KubeCluster) -> None:
    """Over 1 MiB the store refuses, naming the size; the server's record is unchanged."""
    store = kubestate.KubeStateStore(target=adapter, namespace=NAMESPACE, site=contract.SITE)
    store.save(contract.accepted("i-1"))
    entries = tuple(state.InventoryEntry(
        id=f"ns_cm-{n}__ConfigMap", api_version="v1", kind="ConfigMap", namespace="ns",
        name=f"cm-{n}-" + "x" * 200, intent_id="i-1", applied_at=contract.T0)
        for n in range(4000))
    with pytest.raises(errors.StateError, match="more than the 1048576 a ConfigMap holds"):
        store.save(state.SiteState(site=contract.SITE, inventory=entries))
    fresh = kubestate.KubeStateStore(target=adapter, namespace=NAMESPACE, site=contract.SITE)
    assert fresh.load().accepted is not None


def test_status_reads_the_kubernetes_store(any_cluster: ClusterUnderTest,
                                           adapter: kube.KubeCluster, tmp_path: Path) -> None:
    """`reconciler status --state-store kubernetes` prints the ConfigMap's record."""
    kubestate.KubeStateStore(target=adapter, namespace=NAMESPACE,
                             site=contract.SITE).save(contract.accepted("i-1"))
    site = Site(root=tmp_path, remote_url="unused", target=any_cluster)
    done = site.cli("status", "--state-store", "kubernetes", "--state-namespace", NAMESPACE,
                    "--site", contract.SITE, "-o", "json", check=True)
    assert json.loads(done.stdout)["accepted"]["id"] == "i-1"
    missing = site.cli("status", "--state-store", "kubernetes", "--state-namespace",
                       NAMESPACE, "--site", "edge-none")
    assert missing.returncode == 2
    assert "no state for site 'edge-none' in ConfigMap/reconciler-system/" in missing.stderr


def test_sync_with_the_kubernetes_store_refuses_a_lost_state_until_adopt(
        any_cluster: ClusterUnderTest, adapter: kube.KubeCluster, remote: gitrepo.GitRemote,
        tmp_path: Path) -> None:
    """`sync --state-store kubernetes` records in the ConfigMap; with the ConfigMap deleted
    and the site's objects still there it exits 1 naming the loss and --adopt, applies
    nothing, and `--adopt` takes the head's intent. A site whose Lease another replica
    holds is refused at once."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    flags = ("--state-store", "kubernetes", "--state-namespace", NAMESPACE)
    site.sync_cli(*flags).check_returncode()
    ref = cluster.ObjectRef("v1", "ConfigMap", NAMESPACE, kubestate.object_name(SITE))
    store = kubestate.KubeStateStore(target=adapter, namespace=NAMESPACE, site=SITE)
    assert store.load().accepted is not None
    try:
        adapter.delete(ref)
        mark = any_cluster.mark()
        lost = site.sync_cli(*flags)
        assert lost.returncode == 1, lost.stderr
        assert "its state was lost" in lost.stdout + lost.stderr
        assert "--adopt" in lost.stdout + lost.stderr
        assert not [w for w in any_cluster.changed_since(mark)  # only its record and lease
                    if f"/namespaces/{NAMESPACE}/" not in w and "reconciler-state" not in w]
        assert store.load().accepted is None
        adopted = site.sync_cli(*flags, "--adopt")
        assert adopted.returncode == 0, adopted.stderr
        assert store.load().accepted is not None
        held = lease.Lease(target=adapter, namespace=NAMESPACE, site=SITE, holder="other")
        assert held.acquire()
        renewing = threading.Event()

        def renew() -> None:  # another replica, alive: its renewals keep the lease
            while not renewing.wait(1.0):
                held.renew()

        renewer = threading.Thread(target=renew, daemon=True)
        renewer.start()
        try:
            refused = site.sync_cli(*flags)
        finally:
            renewing.set()
            renewer.join()
        assert refused.returncode == 1
        assert "held by another reconciler (other)" in refused.stderr
        held.release()
    finally:
        adapter.delete(ref)
        adapter.delete(cluster.ObjectRef("coordination.k8s.io/v1", "Lease", NAMESPACE,
                                         lease.lease_name(SITE)))
