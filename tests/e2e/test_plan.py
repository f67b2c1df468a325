"""`reconciler plan` against a running API server agrees with what `sync` then does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reconciler import cluster, kube
from reconciler.manager import plan as planner
from reconciler.manager import render
from tests import gitrepo
from tests.e2e.conftest import SITE, ClusterUnderTest, Site, wait_until_ready
from tests.plans import planned, pruned, synced

pytestmark = pytest.mark.e2e

NEW_ID = "sfo-upf-2-4"
CONFIG_MAP = "sites/edge-sfo-01/manifests/30-configmap.yaml"
NETWORK_FUNCTIONS = "sites/edge-sfo-01/manifests/20-networkfunctions.yaml"


def plan(site: Site, *, online: bool) -> planner.Plan:
    """The plan for the branch head, against the cluster or (offline) the recorded state."""
    options = planner.Options(url=site.url, site=SITE, ref="main", state_dir=site.state_dir,
                              cache_dir=site.root / "plan-cache")
    if not online:
        return planner.make(options=options, target=None)
    adapter = kube.connect(kubeconfig=site.target.kubeconfig)
    try:
        return planner.make(options=options, target=adapter)
    finally:
        adapter.close()





def test_plan_agrees_with_sync_on_a_first_rollout(any_cluster: ClusterUnderTest,
                                                  remote: gitrepo.GitRemote, tmp_path: Path):
    """On an empty cluster the online plan says every object would be created, and the sync
    that follows creates exactly those; offline, the plan agrees on the site's objects."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    mark = any_cluster.mark()
    online = plan(site, online=True)
    offline = plan(site, online=False)
    assert any_cluster.changed_since(mark) == [], "a plan changed the cluster"
    assert online.ok and online.decision is not None
    assert online.decision.verdict.value == "accept"
    result = site.sync()
    assert result.ok, result.message
    assert planned(online) == synced(result)
    # The CRDs may be served already on a cluster shared by earlier tests.
    assert {c for o, c in planned(online).items()
            if not o.startswith("CustomResourceDefinition/")} == {"created"}
    site_objects = {o: c for o, c in planned(offline).items()
                    if not o.startswith("CustomResourceDefinition/")}
    assert site_objects == {o: c for o, c in synced(result).items()
                            if not o.startswith("CustomResourceDefinition/")}
    assert online.prunes == offline.prunes == ()


def test_plan_agrees_with_sync_on_changes_drops_and_prunes(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """A new intent that edits one function, leaves one manifest on the old id and removes
    the ConfigMap: the plan's changes, drops and prunes are what the sync then does."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync().ok
    wait_until_ready(any_cluster)
    again = plan(site, online=True)
    assert set(planned(again).values()) == {"unchanged"}, "a synced site plans no change"
    assert set(planned(plan(site, online=False)).values()) <= {"unchanged", "applied"}

    remote.remove(CONFIG_MAP)
    gitrepo.restamp(remote, site=SITE, new_id=NEW_ID, sequence=2,
                    keep_old=("10-workloadcluster.yaml",))
    remote.write(NETWORK_FUNCTIONS, remote.read(NETWORK_FUNCTIONS).replace(
        'version: "2.3.1"', 'version: "2.4.0"'))
    remote.commit_and_push(f"UPF 2.4\n\nIntent-Id: {NEW_ID}")

    mark = any_cluster.mark()
    online = plan(site, online=True)
    offline = plan(site, online=False)
    assert any_cluster.changed_since(mark) == [], "a plan changed the cluster"
    for result in (online, offline):
        assert result.decision is not None and result.decision.verdict.value == "accept"
        assert [d.object for d in result.decision.drops] == [
            "WorkloadCluster/sfo-ran/sfo-wc-01"]
        assert [str(cluster.ObjectRef(p.entry.api_version, p.entry.kind, p.entry.namespace,
                                      p.entry.name)) for p in result.prunes if not p.kept] == [
            "ConfigMap/sfo-ran/sfo-site-config"]

    result = site.sync()
    assert result.ok, result.message
    assert planned(online) == synced(result)
    assert {o: c for o, c in planned(offline).items() if c != "applied"} == {
        o: c for o, c in synced(result).items() if not o.startswith("CustomResourceDefinition/")}
    assert pruned(result) == ["ConfigMap/sfo-ran/sfo-site-config"]
    assert [d.object for d in result.drops] == ["WorkloadCluster/sfo-ran/sfo-wc-01"]


def test_plan_command_line_prints_markdown_and_json(any_cluster: ClusterUnderTest,
                                                   remote: gitrepo.GitRemote, tmp_path: Path):
    """`reconciler plan --kubeconfig` prints a Markdown table, and `-o json` the same plan;
    a refused intent exits 1 and says the accepted one stays in force."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    flags = ["plan", "--repo", remote.url, "--site", SITE, "--state-dir", str(site.state_dir),
             "--kubeconfig", str(any_cluster.kubeconfig)]
    text = site.cli(*flags, check=True).stdout
    assert text.startswith(f"### reconciler plan: site `{SITE}`")
    # The CRDs may be served already on a cluster shared by earlier tests: then no note.
    assert re.search(r"^\| 20 \| `NetworkFunction/sfo-ran/sfo-upf` \| created"
                     r"( \(its CRD is created first\))? \| "
                     r"sites/edge-sfo-01/manifests/20-networkfunctions\.yaml:3 \|$", text, re.M)
    assert "| 0 | `Namespace/sfo-ran` | created |" in text
    assert re.search(r"^\*\*Summary:\*\* [57] to create, .*0 dropped, 0 to prune\.$", text, re.M)
    report = json.loads(site.cli(*flags, "-o", "json", check=True).stdout)
    assert report["verdict"] == "accept" and report["comparedWith"] == "cluster"
    assert [(o["object"], o["change"]) for o in report["objects"] if o["wave"] is not None] == [
        ("Namespace/sfo-ran", "created"), ("ConfigMap/sfo-ran/sfo-site-config", "created"),
        ("WorkloadCluster/sfo-ran/sfo-wc-01", "created"),
        ("NetworkFunction/sfo-ran/sfo-smf", "created"),
        ("NetworkFunction/sfo-ran/sfo-upf", "created")]

    assert site.sync().ok
    gitrepo.restamp(remote, site=SITE, new_id="sfo-old", sequence=1)
    remote.commit_and_push("a replayed, lower sequence")
    refused = site.cli(*flags)
    assert refused.returncode == 1, refused.stderr
    assert "would be REFUSED" in refused.stdout
    assert "`sfo-baseline-1` stays in force; nothing is applied." in refused.stdout


def test_object_the_api_server_refuses_fails_the_plan(any_cluster: ClusterUnderTest,
                                                      remote: gitrepo.GitRemote,
                                                      tmp_path: Path):
    """A manifest the API server refuses (a number where a ConfigMap holds strings) is
    planned as `fails` with the server's reason, and the plan exits 1: the rollout would."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync().ok
    remote.write(CONFIG_MAP, remote.read(CONFIG_MAP).replace("dnn: internet", "dnn: 5"))
    remote.commit_and_push("a number in a ConfigMap")
    result = plan(site, online=True)
    assert not result.ok
    failing = [o for o in result.objects if o.change == planner.FAILS]
    assert [str(o.ref) for o in failing] == ["ConfigMap/sfo-ran/sfo-site-config"]
    assert "ConfigMap/sfo-ran/sfo-site-config" in failing[0].note
    text = render.plan_text(result)
    assert "| **fails**: " in text and "**1 refused by the API server**" in text
    sync = site.sync()
    assert not sync.ok, "the plan said the rollout would fail"
