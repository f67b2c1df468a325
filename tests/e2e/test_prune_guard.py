"""Nothing desired is not a reason to delete everything (#12 item 4), on both clusters: a
site whose manifests/ folder is deleted, or replaced by a file, is refused before any
write and keeps every object; `rollout.prune: allowEmpty` empties it on purpose."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import gitrepo
from tests.e2e.conftest import SITE, ClusterUnderTest, Site, kubectl_run

pytestmark = pytest.mark.e2e

MANIFESTS = f"sites/{SITE}/manifests"
INTENT_FILE = f"sites/{SITE}/intent.yaml"


def config_map_exists(target: ClusterUnderTest) -> bool:
    return kubectl_run(target, "get", "configmap", "sfo-site-config", "-n",
                       "sfo-ran").returncode == 0


@pytest.mark.parametrize("replacement", [None, "a file where the folder was\n"],
                         ids=["deleted", "replaced-by-a-file"])
def test_a_site_without_its_manifests_folder_is_refused_and_keeps_everything(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path,
        replacement: str | None):
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync().ok
    remote.remove(MANIFESTS)
    if replacement is not None:
        remote.write(MANIFESTS, replacement)
    remote.commit_and_push("manifests/ lost by mistake")
    mark = any_cluster.mark()
    refused = site.sync()
    assert not refused.ok
    what = "is missing" if replacement is None else "is not a folder"
    assert refused.message.startswith(
        f"{MANIFESTS}/ {what}: the site would desire nothing and prune everything it "
        "applied; refused (rule: prune-guard)")
    assert any_cluster.changed_since(mark) == []
    assert config_map_exists(any_cluster)
    record = site.store.load()
    assert record.accepted is not None and record.accepted.id == "sfo-baseline-1"
    assert record.inventory  # the site's objects are still its own


def test_allow_empty_empties_the_site_on_purpose(any_cluster: ClusterUnderTest,
                                                 remote: gitrepo.GitRemote, tmp_path: Path):
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync().ok
    remote.remove(MANIFESTS)
    gitrepo.restamp(remote, site=SITE, new_id="sfo-decommission-2", sequence=2)
    remote.write(INTENT_FILE, remote.read(INTENT_FILE).replace("prune: true",
                                                               "prune: allowEmpty"))
    remote.commit_and_push("Decommission the site\n\nIntent-Id: sfo-decommission-2")
    result = site.sync()
    assert result.ok, result.message
    assert not config_map_exists(any_cluster)
    assert site.store.load().inventory == ()
