"""Each site applies as its own field manager, `reconciler/<site>` (#12 item 7), on both
clusters: objects applied under the old shared manager `reconciler` are migrated, so a
field removed from the manifest later is removed; two sites claiming one object conflict,
naming both managers, even with --force-conflicts; a drift pass reads nothing more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler import contract
from tests import gitrepo
from tests.e2e.conftest import SITE, ClusterUnderTest, Site, kubectl, kubectl_run

pytestmark = pytest.mark.e2e

MANIFESTS = f"sites/{SITE}/manifests"
CONFIG = f"{MANIFESTS}/30-configmap.yaml"
MINE = contract.field_manager(SITE)
OTHER = "edge-b"


def apply_managers(target: ClusterUnderTest, *what: str) -> list[str]:
    """The managers of the object's Apply entries (of the object, not its status)."""
    live: Any = kubectl(target, "get", *what, "--show-managed-fields", "-o", "json")
    return sorted(e["manager"] for e in live["metadata"].get("managedFields") or []
                  if e.get("operation") == "Apply" and not e.get("subresource"))


def test_objects_applied_by_the_shared_manager_are_migrated_and_lose_a_removed_field(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch):
    """A site that ran an earlier version (every site applying as `reconciler`) upgrades;
    a key then taken out of its ConfigMap's manifest is gone from the live object, and
    the object's Apply entry is the site's own."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    with monkeypatch.context() as old_version:
        old_version.setattr(contract, "field_manager", lambda site: "reconciler")
        assert site.sync().ok
    assert apply_managers(any_cluster, "configmap", "sfo-site-config", "-n", "sfo-ran") == [
        "reconciler"]

    gitrepo.restamp(remote, site=SITE, new_id="sfo-2", sequence=2)
    remote.write(CONFIG, remote.read(CONFIG).replace(
        "  apn: internet  # the 4G name of the same data network\n", ""))
    remote.commit_and_push("sfo-2: no apn\n\nIntent-Id: sfo-2")
    result = site.sync()
    assert result.ok, result.message
    data = kubectl(any_cluster, "get", "configmap", "sfo-site-config", "-n", "sfo-ran",
                   "-o", "json")["data"]
    assert "apn" not in data and data["dnn"] == "internet"
    for what in (("configmap", "sfo-site-config", "-n", "sfo-ran"),
                 ("namespace", "sfo-ran"),
                 ("networkfunctions", "sfo-upf", "-n", "sfo-ran")):
        assert apply_managers(any_cluster, *what) == [MINE], what
    # The shared CRDs of crds/ stay with the shared manager.
    assert apply_managers(any_cluster, "crd", "networkfunctions.telco.example.com") == [
        contract.SHARED_FIELD_MANAGER]


def test_a_drift_pass_over_the_sites_own_objects_reads_no_single_object(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """The adoption check reads only objects the site's lists did not find: a second pass
    makes no GET of any site object and no write."""
    if not any_cluster.has_request_log:
        pytest.skip("the cluster keeps no request log")
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync().ok
    mark = any_cluster.mark()
    assert site.sync().ok
    requests = any_cluster.requests(mark.time)
    reads = [r.path for r in requests if r.verb == "get" and (
        "/namespaces/sfo-ran/" in r.path or r.path.endswith("/namespaces/sfo-ran"))]
    assert reads == []
    assert any_cluster.changed_since(mark) == []


def other_site(remote: gitrepo.GitRemote, *, adopt: bool) -> None:
    """A second site, edge-b, whose manifest claims edge-sfo-01's ConfigMap."""
    annotations = f"    {contract.ANNOTATION_INTENT_ID}: b-1\n"
    if adopt:
        annotations += f"    {contract.ANNOTATION_ADOPT}: \"{contract.ADOPT_ENABLED}\"\n"
    remote.write(f"sites/{OTHER}/intent.yaml",
                 f"apiVersion: reconciler.dev/v1alpha1\nkind: Intent\nmetadata:\n"
                 f"  name: {OTHER}\nspec:\n  id: b-1\n  sequence: 1\n  rollout:\n"
                 "    healthTimeout: 1m\n    prune: false\n")
    remote.write(f"sites/{OTHER}/manifests/cm.yaml",
                 "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sfo-site-config\n"
                 f"  namespace: sfo-ran\n  annotations:\n{annotations}data:\n  dnn: ims\n")
    remote.commit_and_push(f"{OTHER} claims sfo-site-config")


def test_a_second_site_claiming_an_object_is_refused_then_conflicts(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """Site B's manifest for site A's ConfigMap is refused as an adoption (naming A's
    label); told to adopt it, its apply is a ConflictError naming both managers, and
    --force-conflicts does not take it either. The object stays A's."""
    first = Site(root=tmp_path / "a", remote_url=remote.url, target=any_cluster)
    assert first.sync_cli().returncode == 0
    second = Site(root=tmp_path / "b", remote_url=remote.url, target=any_cluster, site=OTHER)
    try:
        other_site(remote, adopt=False)
        refused = second.sync_cli()
        assert refused.returncode == 1
        assert (f"ConfigMap/sfo-ran/sfo-site-config: exists and was not applied for site "
                f"{OTHER} (it carries {contract.LABEL_SITE}={SITE}, another site's)"
                ) in refused.stderr

        other_site(remote, adopt=True)
        for extra in ((), ("--force-conflicts",)):
            conflicted = second.sync_cli(*extra)
            assert conflicted.returncode == 1, extra
            assert (f"applying as '{contract.field_manager(OTHER)}'; another site's field "
                    f"manager ({MINE}) owns these fields: two sites claim this object"
                    ) in conflicted.stderr, conflicted.stderr
        live = kubectl(any_cluster, "get", "configmap", "sfo-site-config", "-n", "sfo-ran",
                       "-o", "json")
        assert live["metadata"]["labels"][contract.LABEL_SITE] == SITE
        assert live["data"]["dnn"] == "internet"
        assert apply_managers(any_cluster, "configmap", "sfo-site-config", "-n",
                              "sfo-ran") == [MINE]
    finally:
        # crds/ is shared and carries no site label; nothing else of site B was applied.
        kubectl_run(any_cluster, "delete", "configmap", "-A", "-l",
                    f"{contract.LABEL_SITE}={OTHER}", "--ignore-not-found")


def test_two_sites_on_one_cluster_leave_the_shared_crds_as_they_are(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """The CRDs of crds/ carry the managed-by label and no site label, so a second site
    applying them changes nothing, and the first site's next pass writes no CRD (they
    used to flip between the two sites' labels)."""
    first = Site(root=tmp_path / "a", remote_url=remote.url, target=any_cluster)
    assert first.sync_cli().returncode == 0
    second = Site(root=tmp_path / "b", remote_url=remote.url, target=any_cluster, site=OTHER)
    try:
        other_site(remote, adopt=False)
        second.sync_cli()  # refused at its own ConfigMap, after the shared CRDs
        for name in ("networkfunctions.telco.example.com", "workloadclusters.telco.example.com"):
            labels = kubectl(any_cluster, "get", "crd", name, "-o", "json")["metadata"]["labels"]
            assert contract.LABEL_SITE not in labels, name
            assert labels[contract.LABEL_MANAGED_BY] == contract.MANAGED_BY_VALUE
        mark = any_cluster.mark()
        assert first.sync_cli().returncode == 0
        assert [w for w in any_cluster.changed_since(mark)
                if "customresourcedefinitions" in w] == []
    finally:
        kubectl_run(any_cluster, "delete", "configmap", "-A", "-l",
                    f"{contract.LABEL_SITE}={OTHER}", "--ignore-not-found")
