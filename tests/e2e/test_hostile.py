"""The hostile-input corpus (tests/hostile) end to end (#12 item 5): each case through
`reconciler sync` as a subprocess against the embedded cluster (a representative few on
both clusters), and `reconciler run` through hostile commits then a good one.

Each case must end with: exit status non-zero; an error naming the file and the rule; no
write to the cluster for the revision; the accepted intent unchanged; no secret value in
stdout, stderr, the state file or `reconciler status`; no control character reaching the
terminal or a log line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler import contract, localcluster
from tests import gitrepo
from tests.e2e.conftest import SITE, ClusterUnderTest, Site, kubectl
from tests.hostile import cases

pytestmark = pytest.mark.e2e

BASELINE = "sfo-baseline-1"
HOSTILE_ID = "sfo-hostile-2"
# One per kind of defence: depth before the C parser, a Secret's duplicate key, log
# forging by a name, a later wave's bad List item, a submodule for manifests/, an alias bomb.
REPRESENTATIVE = ("bracket-bomb", "duplicate-key-secret", "name-newline", "list-bad-item",
                  "manifests-submodule", "billion-laughs", "symlink-outside")


class HostileRepo:
    """The sample repository on a Git remote, where each case is one more commit: the
    sample restored, restamped to HOSTILE_ID, and the case's files written on top. History
    stays linear, as a real branch's would."""

    def __init__(self, remote: gitrepo.GitRemote) -> None:
        self.remote = remote
        self.base = gitrepo.git("rev-parse", "HEAD", cwd=remote.work)

    def push(self, case: cases.Case, *, intent_id: str = HOSTILE_ID) -> str:
        work = self.remote.work
        gitrepo.git("read-tree", "-u", "--reset", self.base, cwd=work)
        gitrepo.git("clean", "-fdqx", cwd=work)
        cases.restamp(work, intent_id=intent_id)
        cases.write(work, case, intent_id=intent_id)
        return self.remote.commit_and_push(case.subject or f"hostile: {case.name}")

    def push_good(self, intent_id: str, sequence: int) -> str:
        """A good new intent: the sample restamped to `intent_id`."""
        work = self.remote.work
        gitrepo.git("read-tree", "-u", "--reset", self.base, cwd=work)
        gitrepo.git("clean", "-fdqx", cwd=work)
        gitrepo.restamp(self.remote, site=SITE, new_id=intent_id, sequence=sequence)
        return self.remote.commit_and_push(f"Good intent\n\nIntent-Id: {intent_id}")


def assert_refused(case: cases.Case, *, site: Site, target: ClusterUnderTest,
                   commit: str) -> None:
    """Run `reconciler sync` on the case's commit and check every promise of the corpus."""
    since = time.time()
    done = site.sync_cli()
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"{case.name} exited 0:\n{output[-3000:]}"
    assert case.rule in output, f"{case.name}: rule missing:\n{output[-3000:]}"
    assert case.file in output, f"{case.name}: file missing:\n{output[-3000:]}"
    assert target.writes(since) == [], f"{case.name} wrote to the cluster"
    record = site.store.load()
    assert record.accepted is not None and record.accepted.id == BASELINE
    assert record.last_fetched_head == commit  # it did read the hostile commit
    state_text = site.store.path.read_text(encoding="utf-8")
    assert_inert(case, output, state_text)
    if case.secret:
        status = site.cli("status", "--site", SITE, "--state-dir", str(site.state_dir))
        assert_inert(case, status.stdout + status.stderr)


def assert_inert(case: cases.Case, *texts: str) -> None:
    """No secret, no terminal escape, no forged log line in any of `texts`."""
    for text in texts:
        if case.secret:
            assert case.secret not in text, f"{case.name} showed the secret"
        assert "\x1b" not in text, f"{case.name} let an escape sequence through"
        assert "\r" not in text
        for line in text.splitlines():
            assert not line.startswith(("ERROR forged", "INFO forged")), \
                f"{case.name} forged a log line: {line!r}"


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterUnderTest]:
    """One embedded cluster for every case of the corpus: refusals write nothing, so the
    cases cannot disturb one another."""
    root = tmp_path_factory.mktemp("hostile-cluster")
    with localcluster.LocalCluster(ready_delay=0.2) as server:
        kubeconfig = root / "kubeconfig"
        server.write_kubeconfig(kubeconfig)
        target = ClusterUnderTest(name="local", kubeconfig=kubeconfig, local=server,
                                  since=time.time())
        yield target
        target.close()


@pytest.fixture(scope="module")
def synced(shared_cluster: ClusterUnderTest,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[Site, HostileRepo]:
    """The sample site applied once (its baseline intent accepted), and its remote."""
    root = tmp_path_factory.mktemp("hostile-site")
    remote = gitrepo.GitRemote(root / "git")
    remote.copy_from(contract.sample_repo_dir())
    remote.commit_and_push("Baseline intents for edge-sfo-01 and edge-nyc-02")
    site = Site(root=root, remote_url=remote.url, target=shared_cluster)
    result = site.sync()
    assert result.ok, result.message
    return site, HostileRepo(remote)


@pytest.mark.parametrize("case", cases.CASES, ids=[case.name for case in cases.CASES])
def test_hostile_case_is_refused_by_sync_with_no_write(
        synced: tuple[Site, HostileRepo], shared_cluster: ClusterUnderTest,
        case: cases.Case) -> None:
    """`reconciler sync` of the case exits non-zero naming the file and the rule, writes
    nothing, keeps the accepted intent and shows no secret (embedded cluster)."""
    site, repo = synced
    commit = repo.push(case)
    assert_refused(case, site=site, target=shared_cluster, commit=commit)


def test_representative_cases_are_refused_on_both_clusters(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path) -> None:
    """A few cases, one per kind of defence, are refused with no write on each cluster."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    first = site.sync()
    assert first.ok, first.message
    repo = HostileRepo(remote)
    for name in REPRESENTATIVE:
        case = cases.by_name(name)
        commit = repo.push(case)
        if any_cluster.has_request_log:
            assert_refused(case, site=site, target=any_cluster, commit=commit)
        else:  # an external cluster: compare the site's objects instead of a request log
            mark = any_cluster.mark()
            assert site.sync_cli().returncode != 0
            assert any_cluster.changed_since(mark) == []


def wait_for(what: str, check: Callable[[], bool], *, timeout: float = 60.0,
             process: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if process is not None:
            assert process.poll() is None, f"the agent exited ({process.returncode}) " \
                                           f"waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.2)


@contextlib.contextmanager
def agent(site: Site) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`reconciler run` for the site as a subprocess, its stderr collected as it comes."""
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "run", "--repo", site.url, "--site", SITE,
         "--state-dir", str(site.state_dir), "--cache-dir", str(site.root / "cache"),
         "--interval", "1"],
        env={**os.environ, "KUBECONFIG": str(site.target.kubeconfig)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(5.0)


AGENT_CASES = ("bracket-bomb", "depth-600-block", "duplicate-key-secret", "name-newline",
               "list-bad-item", "manifests-submodule")


def test_the_agent_survives_hostile_commits_and_applies_the_next_good_one(
        local_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path) -> None:
    """`reconciler run` refuses each hostile commit without a write and keeps running (the
    bracket bomb once killed it); the good commit after them is accepted and applied."""
    site = Site(root=tmp_path, remote_url=remote.url, target=local_cluster)
    repo = HostileRepo(remote)
    with agent(site) as (process, lines):
        wait_for("the baseline", lambda: _phase(site) == ("sfo-baseline-1", "Succeeded"),
                 process=process)
        since = time.time()
        for name in AGENT_CASES:
            commit = repo.push(cases.by_name(name))
            wait_for(f"{name} to be refused", lambda commit=commit: _failed_at(site, commit),
                     process=process)
        # The agent reports each refusal as an Event: its own record, not the revision's.
        assert [w for w in local_cluster.writes(since) if w.kind != "Event"] == []
        assert site.store.load().accepted.id == BASELINE  # type: ignore[union-attr]
        listed = kubectl(local_cluster, "get", "events", "-A", "-o", "json")["items"]
        events = "\n".join(str(event.get("message", "")) for event in listed)
        repo.push_good("sfo-good-3", 3)
        wait_for("the good intent", lambda: _phase(site) == ("sfo-good-3", "Succeeded"),
                 process=process)
        assert process.poll() is None
    output = "".join(lines)
    for name in AGENT_CASES:
        assert_inert(cases.by_name(name), output, events)
    assert "sfo-good-3" in output


def _phase(site: Site) -> tuple[str | None, str | None]:
    if not site.store.path.exists():
        return None, None
    rollout = site.store.load().rollout
    return (rollout.intent_id, rollout.phase.value) if rollout else (None, None)


def _failed_at(site: Site, commit: str) -> bool:
    record = site.store.load()
    last = record.last_sync
    return last is not None and last.commit == commit and last.result == "failed"
