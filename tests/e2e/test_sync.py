"""`reconciler sync` end to end: real Git, the real adapter, a running API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler import contract
from reconciler.site import fence, state
from tests import gitrepo, gitservers
from tests.e2e.conftest import SITE, ClusterUnderTest, Site, kubectl, wait_until_ready

pytestmark = pytest.mark.e2e

NEW_ID = "sfo-upf-2-4"
STALE = "ConfigMap/sfo-ran/sfo-site-config"


def land_new_intent(remote: gitrepo.GitRemote, *, keep_old: tuple[str, ...] = ()) -> str:
    gitrepo.restamp(remote, site=SITE, new_id=NEW_ID, sequence=2, keep_old=keep_old)
    return remote.commit_and_push(f"Upgrade the UPF\n\nIntent-Id: {NEW_ID}")


def test_first_intent_is_applied(any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote,
                                 tmp_path: Path):
    """The first sync applies every manifest of the intent, labelled and annotated."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    result = site.sync()
    assert result.ok, result.message
    nfs = kubectl(any_cluster, "get", "networkfunctions", "-n", "sfo-ran", "-o", "json")
    assert sorted(i["metadata"]["name"] for i in nfs["items"]) == ["sfo-smf", "sfo-upf"]
    for item in nfs["items"]:
        meta = item["metadata"]
        assert meta["annotations"][contract.ANNOTATION_INTENT_ID] == "sfo-baseline-1"
        assert meta["labels"][contract.LABEL_SITE] == SITE
        assert meta["labels"][contract.LABEL_MANAGED_BY] == "reconciler"
    cm = kubectl(any_cluster, "get", "configmap", "sfo-site-config", "-n", "sfo-ran",
                 "-o", "json")
    assert cm["data"]["dnn"] == "internet"
    recorded = site.store.load()
    assert recorded.accepted is not None and recorded.accepted.id == "sfo-baseline-1"
    assert len(recorded.inventory) == 5


def test_stale_manifest_is_never_sent(any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote,
                                      tmp_path: Path):
    """A manifest still carrying the old intent is dropped: no request for it reaches the API."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync().ok
    land_new_intent(remote, keep_old=("30-configmap.yaml",))
    result = site.sync()
    assert result.ok, result.message
    assert [d.object for d in result.drops] == [STALE]
    cm = kubectl(any_cluster, "get", "configmap", "sfo-site-config", "-n", "sfo-ran",
                 "-o", "json")
    assert cm["metadata"]["annotations"][contract.ANNOTATION_INTENT_ID] == "sfo-baseline-1"
    upf = kubectl(any_cluster, "get", "networkfunction", "sfo-upf", "-n", "sfo-ran", "-o", "json")
    assert upf["metadata"]["annotations"][contract.ANNOTATION_INTENT_ID] == NEW_ID
    if any_cluster.has_request_log:
        accepted = site.store.load().accepted
        assert accepted is not None
        since = state.parse_time(accepted.accepted_at).timestamp()
        assert not [r for r in any_cluster.writes(since) if r.name == "sfo-site-config"]
        assert not [r for r in any_cluster.requests(since) if r.intent_id == "sfo-baseline-1"]


def test_new_intent_is_recorded_before_any_of_its_applies(any_cluster: ClusterUnderTest,
                                                          remote: gitrepo.GitRemote,
                                                          tmp_path: Path):
    """The state's accepted-at precedes the first request carrying the new intent id."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync().ok
    land_new_intent(remote)
    assert site.sync().ok
    accepted = site.store.load().accepted
    assert accepted is not None and accepted.id == NEW_ID
    if not any_cluster.has_request_log:
        pytest.skip(f"the {any_cluster.name} cluster keeps no request log")
    carrying = [r for r in any_cluster.requests() if r.intent_id == NEW_ID]
    assert carrying, "the new intent's manifests were applied"
    accepted_at = state.parse_time(accepted.accepted_at).timestamp()
    assert accepted_at < min(r.time for r in carrying)


def test_lower_sequence_is_refused(any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote,
                                   tmp_path: Path):
    """A late intent with a lower sequence is refused with exit 1 and sends no write."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    gitrepo.restamp(remote, site=SITE, new_id="sfo-7", sequence=7)
    remote.commit_and_push("sfo-7")
    assert site.sync_cli().returncode == 0
    gitrepo.restamp(remote, site=SITE, new_id="sfo-late", sequence=6)
    remote.commit_and_push("A late merge")
    mark = any_cluster.mark()
    done = site.sync_cli()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "sequence 6, not higher than 7" in done.stdout
    assert any_cluster.changed_since(mark) == []
    recorded = site.store.load()
    assert recorded.accepted is not None and recorded.accepted.id == "sfo-7"


def test_missing_intent_file_applies_nothing(any_cluster: ClusterUnderTest,
                                             remote: gitrepo.GitRemote, tmp_path: Path):
    """A revision without intent.yaml fails naming the file and sends nothing to the cluster."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    remote.remove("sites/edge-sfo-01/intent.yaml")
    remote.commit_and_push("Intent file lost in a bad merge")
    mark = any_cluster.mark()
    done = site.sync_cli()
    assert done.returncode == 1
    assert "sites/edge-sfo-01/intent.yaml: missing" in done.stderr + done.stdout
    assert any_cluster.changed_since(mark) == []


def test_force_push_is_refused(any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote,
                               tmp_path: Path):
    """A force-pushed branch is refused: exit 1, no write, the recorded head kept."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    head = remote.commit_and_push("Second")
    assert site.sync().ok
    remote.reset_hard("HEAD~1")
    gitrepo.restamp(remote, site=SITE, new_id=NEW_ID, sequence=2)
    remote.commit("Rewritten history")
    remote.push(force=True)
    mark = any_cluster.mark()
    done = site.sync_cli()
    assert done.returncode == 1
    assert "was rewritten" in done.stderr + done.stdout
    assert any_cluster.changed_since(mark) == []
    assert site.store.load().last_fetched_head == head


def test_second_sync_is_a_no_op(any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote,
                                tmp_path: Path):
    """A second pass changes no object: same resourceVersion and generation everywhere."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync().ok

    def versions() -> dict[str, tuple[str, int | None]]:
        found = {}
        for kind in ("networkfunctions", "workloadclusters", "configmaps"):
            for item in kubectl(any_cluster, "get", kind, "-n", "sfo-ran", "-o",
                                "json")["items"]:
                meta = item["metadata"]
                found[f"{kind}/{meta['name']}"] = (meta["resourceVersion"],
                                                   meta.get("generation"))
        return found

    wait_until_ready(any_cluster)  # the simulated controllers' status writes are done
    before = versions()
    mark = any_cluster.mark()
    result = site.sync()
    assert result.ok and result.verdict is fence.Verdict.KEEP
    assert versions() == before
    assert any_cluster.changed_since(mark) == []
    site_results = [r for r in result.results if r.intent_id]
    assert {r.change.value for r in site_results} == {"unchanged"}


def test_two_reconcilers_on_one_state_are_refused(any_cluster: ClusterUnderTest,
                                                  remote: gitrepo.GitRemote, tmp_path: Path):
    """While one reconciler holds a site's state, a second exits 1 naming the holder's pid."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from reconciler.site import state\n"
         f"s = state.FileStateStore(state_dir=Path({str(site.state_dir)!r}), site={SITE!r})\n"
         "with s.lock():\n    print('locked', flush=True); sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        mark = any_cluster.mark()
        done = site.sync_cli()
        assert done.returncode == 1
        assert f"pid {holder.pid}" in done.stderr
        assert any_cluster.changed_since(mark) == []
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=10)
    assert site.sync_cli().returncode == 0


def test_sync_over_git_daemon(any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote,
                              tmp_path: Path):
    """A git:// URL served by `git daemon` on loopback is fetched and applied."""
    with gitservers.git_daemon(remote.bare.parent) as base:
        site = Site(root=tmp_path, remote_url=f"{base}/remote.git", target=any_cluster)
        result = site.sync()
    assert result.ok, result.message
    assert result.commit == gitrepo.git("rev-parse", "HEAD", cwd=remote.work)


@pytest.mark.skipif(not gitservers.SSHD.exists() or os.geteuid() != 0,
                    reason="needs root and openssh-server (/usr/sbin/sshd); .ci/run installs it")
def test_sync_over_ssh(any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote,
                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An ssh:// URL is fetched through a real sshd on loopback with key authentication."""
    with gitservers.git_ssh(tmp_path / "ssh") as (base, command):
        monkeypatch.setenv("GIT_SSH_COMMAND", command)
        site = Site(root=tmp_path, remote_url=f"{base}{remote.bare}", target=any_cluster)
        done = site.sync_cli()
    assert done.returncode == 0, done.stdout + done.stderr
    assert site.store.load().last_fetched_head == gitrepo.git("rev-parse", "HEAD",
                                                             cwd=remote.work)


def test_sync_over_http_with_credentials_never_leaks_them(any_cluster: ClusterUnderTest,
                                                          remote: gitrepo.GitRemote,
                                                          tmp_path: Path):
    """Smart HTTP with Basic auth works with --git-credentials-file, and the password is in
    no output, error or state; a URL carrying it is refused (docs/git.md)."""
    secret = "s3cr3t-t0ken"
    good_file, bad_file = tmp_path / "good-creds", tmp_path / "bad-creds"
    good_file.write_text(f"site:{secret}\n")
    bad_file.write_text(f"site:wrong-{secret}\n")
    with gitservers.git_http(remote.bare.parent, user="site", password=secret) as base:
        site = Site(root=tmp_path, remote_url=f"{base}/remote.git", target=any_cluster)
        ok = site.sync_cli("--git-credentials-file", str(good_file))
        status = site.cli("status", "--state-dir", str(site.state_dir), "--site", SITE)
        bad = Site(root=tmp_path / "bad", target=any_cluster, remote_url=f"{base}/remote.git")
        failed = bad.sync_cli("--git-credentials-file", str(bad_file))
        in_url = Site(root=tmp_path / "in-url", target=any_cluster,
                      remote_url=f"{base.replace('http://', f'http://site:{secret}@')}"
                                 "/remote.git")
        refused = in_url.sync_cli()
    assert ok.returncode == 0, ok.stderr
    assert failed.returncode == 1
    assert "fetch of branch 'main'" in failed.stderr
    assert refused.returncode == 2 and "carries credentials" in refused.stderr
    texts = [ok.stdout, ok.stderr, status.stdout, failed.stdout, failed.stderr,
             refused.stdout, refused.stderr, site.store.path.read_text(),
             bad.store.path.read_text()]
    assert not [t for t in texts if secret in t]


def test_cli_status_reports_the_story(any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote,
                                      tmp_path: Path):
    """`status` shows the accepted intent, the drop and the history; `-o json` is the state."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync_cli().returncode == 0
    land_new_intent(remote, keep_old=("30-configmap.yaml",))
    synced = site.sync_cli("-o", "json")
    assert synced.returncode == 0, synced.stderr
    summary = json.loads(synced.stdout)
    assert summary["verdict"] == "accept" and summary["intentId"] == NEW_ID
    assert [d["object"] for d in summary["drops"]] == [STALE]
    text = site.cli("status", "--state-dir", str(site.state_dir), "--site", SITE, check=True)
    assert f"Intent:        {NEW_ID}, sequence 2" in text.stdout
    assert STALE in text.stdout and "sfo-baseline-1" in text.stdout
    as_json = json.loads(site.cli("status", "--state-dir", str(site.state_dir), "-o", "json",
                                  check=True).stdout)
    assert as_json["accepted"]["id"] == NEW_ID
    assert [h["id"] for h in as_json["history"]] == ["sfo-baseline-1", NEW_ID]
    assert as_json["history"][0]["supersededBy"] == NEW_ID


def test_usage_errors_exit_2(tmp_path: Path):
    """Missing flags, a bad kubeconfig or an unknown state exit 2 with a clear message."""
    run = Site(root=tmp_path, remote_url="unused", target=ClusterUnderTest(
        name="none", kubeconfig=tmp_path / "missing-kubeconfig"))
    missing_site = run.cli("sync", "--repo", "x")
    assert missing_site.returncode == 2 and "--site" in missing_site.stderr
    bad_config = run.sync_cli("--kubeconfig", str(tmp_path / "nope"))
    assert bad_config.returncode == 2 and "cannot load cluster config" in bad_config.stderr
    no_state = run.cli("status", "--state-dir", str(tmp_path / "empty"), "--site", SITE)
    assert no_state.returncode == 2 and "no state for site" in no_state.stderr


def test_context_flag_selects_the_cluster(any_cluster: ClusterUnderTest,
                                          remote: gitrepo.GitRemote, tmp_path: Path):
    """--context picks a kubeconfig context; an unreachable current context fails clearly."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    config = yaml.load(any_cluster.kubeconfig.read_text())
    working = config["current-context"]
    config["clusters"].append({"name": "down", "cluster": {"server": "http://127.0.0.1:1"}})
    config["contexts"].append({"name": "down", "context": {"cluster": "down",
                                                           "user": config["users"][0]["name"]}})
    config["current-context"] = "down"
    with (tmp_path / "two-contexts").open("w") as handle:
        yaml.dump(config, handle)
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    kubeconfig = ("--kubeconfig", str(tmp_path / "two-contexts"))
    down = site.sync_cli(*kubeconfig)
    assert down.returncode == 1
    assert "cannot reach the API server at http://127.0.0.1:1" in down.stderr
    up = site.sync_cli(*kubeconfig, "--context", working)
    assert up.returncode == 0, up.stderr
    unknown = site.sync_cli(*kubeconfig, "--context", "nope")
    assert unknown.returncode == 2 and "nope" in unknown.stderr


def test_a_crd_carrying_an_intent_id_fails_sync_with_no_write(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """A document of crds/ that carries an intent id (crds/ is shared by every site and
    outside the fence) fails the pass before any write, naming the file and where to move
    the document; the intent in force stays."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync().ok
    path = "crds/workloadclusters.telco.example.com.yaml"
    head, tail = remote.read(path).split("metadata:\n", 1)
    remote.write(path, f"{head}metadata:\n  annotations:\n"
                 f"    reconciler.dev/intent-id: sfo-baseline-1\n{tail}")
    gitrepo.restamp(remote, site=SITE, new_id=NEW_ID, sequence=2)
    remote.commit_and_push("A new intent, and a CRD tagged with the old one")
    mark = any_cluster.mark()
    done = site.sync_cli()
    assert done.returncode == 1, done.stdout + done.stderr
    assert path in done.stdout + done.stderr and "[crd-intent-id]" in done.stdout + done.stderr
    assert f"move the document under sites/{SITE}/manifests/" in done.stdout + done.stderr
    assert any_cluster.changed_since(mark) == []
    recorded = site.store.load()
    assert recorded.accepted is not None and recorded.accepted.id == "sfo-baseline-1"


def test_an_intent_without_a_sequence_after_one_with_is_refused(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """Once the site has seen a sequence, an intent without one is refused with exit 1
    and no write."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    gitrepo.restamp(remote, site=SITE, new_id="sfo-5", sequence=5)
    remote.commit_and_push("sfo-5")
    assert site.sync_cli().returncode == 0
    gitrepo.restamp(remote, site=SITE, new_id="sfo-unnumbered", sequence=None)
    intent_file = f"sites/{SITE}/intent.yaml"
    remote.write(intent_file, "".join(line for line in remote.read(intent_file)
                                      .splitlines(keepends=True)
                                      if not line.strip().startswith("sequence:")))
    remote.commit_and_push("An intent without a sequence")
    mark = any_cluster.mark()
    done = site.sync_cli()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "has no sequence" in done.stdout
    assert any_cluster.changed_since(mark) == []
    recorded = site.store.load()
    assert recorded.accepted is not None and recorded.accepted.id == "sfo-5"
