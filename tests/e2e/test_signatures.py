"""Signed intents end to end: `reconciler sync` and `run --verify-signatures` with real gpg
and ssh-keygen signatures, the real adapter and a running API server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.site import state
from tests import gitrepo
from tests.e2e.conftest import SITE, ClusterUnderTest, Site, kubectl, kubectl_run
from tests.signing import INTRUDER, Signers

pytestmark = pytest.mark.e2e

NEW_ID = "sfo-upf-2-4"


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signers]:
    made = Signers(tmp_path_factory.mktemp("signers"))
    yield made
    made.close()


def verifying(signers: Signers) -> tuple[str, ...]:
    return ("--verify-signatures", "--trusted-keys", str(signers.keyring),
            "--allowed-signers", str(signers.allowed_signers))


def accepted_id(site: Site) -> str | None:
    recorded = site.store.load().accepted
    return recorded.id if recorded else None


def upf_intent(target: ClusterUnderTest) -> str:
    return str(kubectl(target, "get", "networkfunction", "sfo-upf", "-n", "sfo-ran", "-o",
                       "jsonpath={.metadata.annotations.reconciler\\.dev/intent-id}"))


def land(remote: gitrepo.GitRemote, signers: Signers, *, key: str | None,
         intent_id: str = NEW_ID, sequence: int = 2) -> str:
    """A new intent for the site, committed with `key` (Signers.sign_args) and pushed."""
    gitrepo.restamp(remote, site=SITE, new_id=intent_id, sequence=sequence)
    sha = signers.commit(remote.work, f"Intent {intent_id}\n\nIntent-Id: {intent_id}", key=key)
    remote.push()
    return sha


@pytest.mark.parametrize("key", ["gpg", "ssh"])
def test_an_unsigned_head_is_refused_and_a_signed_one_applied(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path,
        signers: Signers, key: str):
    """The unsigned baseline: exit 1 naming the commit, nothing written, recorded at stage
    fetch; the same commit signed with a trusted key (force-pushed): exit 0, applied."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    unsigned = gitrepo.git("rev-parse", "HEAD", cwd=remote.work)
    mark = any_cluster.mark()
    done = site.sync_cli(*verifying(signers))
    assert done.returncode == 1, done.stderr
    assert f"commit {unsigned[:12]} at the head of branch 'main'" in done.stderr
    assert "refused: unsigned" in done.stderr
    assert any_cluster.changed_since(mark) == []
    assert kubectl_run(any_cluster, "get", "namespace", "sfo-ran").returncode != 0
    recorded = site.store.load()
    assert recorded.accepted is None and recorded.last_fetched_head is None
    assert recorded.errors[-1].stage == "fetch"
    assert "refused: unsigned" in recorded.errors[-1].message
    status = site.cli("status", "--state-dir", str(site.state_dir), "--site", SITE)
    assert status.returncode == 1 and "refused: unsigned" in status.stdout + status.stderr

    signed = signers.sign_head(remote.work, key=key)
    remote.push(force=True)
    done = site.sync_cli(*verifying(signers))
    assert done.returncode == 0, done.stderr
    assert upf_intent(any_cluster) == "sfo-baseline-1"
    assert site.store.load().last_fetched_head == signed


def test_an_untrusted_change_stays_refused_under_a_trusted_head(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path,
        signers: Signers):
    """A new intent signed by an intruder's ssh key is refused (its fingerprint named, the
    intent in force kept, nothing written); a manager's signed commit for another site on
    top does not vouch for it: still refused, naming the intruder's commit under the head
    and the file it changes; the branch rewritten without it is accepted and applied."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    baseline = signers.sign_head(remote.work, key="gpg")
    remote.push(force=True)
    assert site.sync_cli(*verifying(signers)).returncode == 0
    intruder = land(remote, signers, key="ssh:other")
    mark = any_cluster.mark()
    done = site.sync_cli(*verifying(signers))
    assert done.returncode == 1, done.stderr
    assert (f"commit {intruder[:12]} at the head of branch 'main' of {remote.url} refused: "
            f"signed by untrusted key {signers.ssh_fingerprints[INTRUDER]}") in done.stderr

    gitrepo.restamp(remote, site="edge-nyc-02", new_id="nyc-2", sequence=2)
    head = signers.commit(remote.work, "Publish nyc-2", key="ssh")
    remote.push()
    done = site.sync_cli(*verifying(signers))
    assert done.returncode == 1, done.stderr
    assert (f"commit {intruder[:12]} under the head {head[:12]} of branch 'main' of "
            f"{remote.url} refused: signed by untrusted key "
            f"{signers.ssh_fingerprints[INTRUDER]}; it changes sites/{SITE}/") in done.stderr
    assert any_cluster.changed_since(mark) == []
    assert accepted_id(site) == "sfo-baseline-1"
    assert upf_intent(any_cluster) == "sfo-baseline-1"
    assert site.store.load().last_fetched_head == baseline

    remote.reset_hard(baseline)
    gitrepo.restamp(remote, site=SITE, new_id=NEW_ID, sequence=2)
    go_ahead = signers.commit(remote.work, f"Intent {NEW_ID}", key="ssh")
    remote.push(force=True)
    done = site.sync_cli(*verifying(signers))
    assert done.returncode == 0, done.stderr
    assert accepted_id(site) == NEW_ID
    assert upf_intent(any_cluster) == NEW_ID
    assert site.store.load().last_fetched_head == go_ahead


def test_a_signature_moved_onto_other_content_is_refused(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path,
        signers: Signers):
    """A trusted signature copied onto a commit of another tree (a new intent) is a bad
    signature: refused, nothing written, the intent in force kept. (The site synced the
    baseline before verification was turned on; the forgery descends from it.)"""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync_cli().returncode == 0
    baseline = gitrepo.git("rev-parse", "HEAD", cwd=remote.work)
    signed = signers.commit(remote.work, "Reviewed", key="gpg")  # never pushed
    signers.git("reset", "-q", "--hard", baseline, cwd=remote.work)
    gitrepo.restamp(remote, site=SITE, new_id=NEW_ID, sequence=2)
    evil = signers.commit(remote.work, f"Intent {NEW_ID}", key=None)
    forged = signers.tamper(remote.work, signed=signed, tree_of=evil)
    remote.push()
    mark = any_cluster.mark()
    done = site.sync_cli(*verifying(signers))
    assert done.returncode == 1, done.stderr
    assert f"commit {forged[:12]}" in done.stderr and "refused: bad signature" in done.stderr
    assert any_cluster.changed_since(mark) == []
    assert accepted_id(site) == "sfo-baseline-1"
    assert site.store.load().last_fetched_head == baseline


def test_usage_errors_exit_2_before_anything_is_fetched(tmp_path: Path, signers: Signers):
    """--verify-signatures without keys, or with an empty keyring, exits 2 naming the
    flag and the file; no state is written."""
    empty = tmp_path / "empty.asc"
    empty.write_text("")
    base = [sys.executable, "-m", "reconciler", "sync", "--repo", str(tmp_path / "none"),
            "--site", SITE, "--state-dir", str(tmp_path / "state")]
    for extra, said in ((["--verify-signatures"], "--verify-signatures needs the trusted keys"),
                        (["--verify-signatures", "--trusted-keys", str(empty)],
                         f"--trusted-keys {empty}: the file is empty"),
                        (["--allowed-signers", str(signers.allowed_signers)],
                         "without --verify-signatures")):
        done = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 2, done.stderr
        assert said in done.stderr
    assert not (tmp_path / "state" / f"{SITE}.json").exists()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.1)


def test_the_agent_refuses_an_unsigned_head_then_applies_a_signed_one(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path,
        signers: Signers):
    """`reconciler run --verify-signatures` refuses the unsigned head and keeps running;
    the same commit signed and force-pushed later is accepted and applied without a
    restart."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "run", "--repo", site.url, "--site", SITE,
         "--state-dir", str(site.state_dir), "--interval", "1", *verifying(signers)],
        env={**os.environ, "KUBECONFIG": str(any_cluster.kubeconfig)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def refused() -> bool:
            if not site.store.path.exists():
                return False
            errors = site.store.load().errors
            return bool(errors) and "refused: unsigned" in errors[-1].message
        wait_for("the unsigned head to be refused", refused)
        assert process.poll() is None
        assert accepted_id(site) is None
        assert kubectl_run(any_cluster, "get", "namespace", "sfo-ran").returncode != 0

        signed = signers.sign_head(remote.work, key="ssh")
        remote.push(force=True)

        def applied() -> bool:
            rollout = site.store.load().rollout
            return (rollout is not None and rollout.commit == signed
                    and rollout.phase is state.Outcome.SUCCEEDED)
        wait_for("the signed head to be applied", applied, timeout=60)
        assert process.poll() is None
        assert upf_intent(any_cluster) == "sfo-baseline-1"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        _, stderr = process.communicate()
    assert "refused: unsigned" in stderr
