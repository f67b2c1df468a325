"""Publish then sync, end to end: the manager's `intent publish --push` reaches a site."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel import yaml as ruamel_yaml

from reconciler import cli, contract
from tests import gitrepo
from tests.e2e.conftest import SITE, ClusterUnderTest, Site, kubectl

pytestmark = pytest.mark.e2e

NEW_ID = "sfo-upf-2-4"


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A manager's git: an identity of its own and none of the user's configuration."""
    home = tmp_path / "manager-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Manager")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "manager@example.com")


def site_objects(remote: gitrepo.GitRemote) -> list[tuple[str, str, str | None]]:
    """(kind, name, namespace) of every manifest document of the site in the work tree."""
    found = []
    for path in sorted((remote.work / contract.manifests_dir(SITE)).glob("*.yaml")):
        for doc in ruamel_yaml.YAML(typ="safe").load_all(path.read_bytes()):
            meta = doc["metadata"]
            found.append((doc["kind"], meta["name"], meta.get("namespace")))
    return found


def test_published_intent_is_accepted_and_every_manifest_applied(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path,
        manager: None, capsys: pytest.CaptureFixture[str]) -> None:
    """After `intent publish --push`, a sync accepts the new intent and applies every one of
    the site's manifests carrying its id: none is dropped as stale."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    first = site.sync()
    assert first.ok, first.message
    code = cli.main(["intent", "publish", "--repo", str(remote.work), "--site", SITE,
                     "--id", NEW_ID, "-m", "Upgrade the UPF to 2.4", "--push"])
    assert code == 0, capsys.readouterr().err
    result = site.sync()
    assert result.ok, result.message
    assert result.intent_id == NEW_ID
    assert result.drops == ()
    recorded = site.store.load()
    assert recorded.accepted is not None
    assert (recorded.accepted.id, recorded.accepted.sequence) == (NEW_ID, 2)
    objects = site_objects(remote)
    assert len(objects) == len(recorded.inventory) == 5
    for kind, name, namespace in objects:
        where = ["-n", namespace] if namespace else []
        live = kubectl(any_cluster, "get", kind.lower(), name, *where, "-o", "json")
        assert live["metadata"]["annotations"][contract.ANNOTATION_INTENT_ID] == NEW_ID, \
            f"{kind}/{name}"
