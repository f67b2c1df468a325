"""Rollouts end to end: waves and health gates, abort on a new intent, prune, drift, and the
long-running agent's shutdown and crash recovery, on every cluster under test."""

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

from reconciler import contract, kube, localcluster
from reconciler.localcluster import controllers
from reconciler.site import agent, state
from tests import gitrepo
from tests.e2e.conftest import SITE, ClusterUnderTest, Site, kubectl, wait_until_ready

pytestmark = pytest.mark.e2e

WC_FILE = "sites/edge-sfo-01/manifests/10-workloadcluster.yaml"
CM_FILE = "sites/edge-sfo-01/manifests/30-configmap.yaml"


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.05)


def slow_cluster(remote: gitrepo.GitRemote, seconds: int) -> None:
    """Make the WorkloadCluster take `seconds` to become Ready (simulated controllers)."""
    text = remote.read(WC_FILE)
    remote.write(WC_FILE, text.replace(
        "    reconciler.dev/wave: \"10\"",
        f"    reconciler.dev/wave: \"10\"\n    {controllers.DELAY_ANNOTATION}: \"{seconds}\""))


def new_intent(remote: gitrepo.GitRemote, intent_id: str, sequence: int, *,
               k8s: str) -> str:
    """Land a new intent that also changes the WorkloadCluster's spec (a new generation)."""
    text = remote.read(WC_FILE)
    lines = [line for line in text.splitlines() if controllers.DELAY_ANNOTATION not in line]
    remote.write(WC_FILE, "\n".join(
        f"  kubernetesVersion: {k8s}" if line.startswith("  kubernetesVersion:") else line
        for line in lines) + "\n")
    gitrepo.restamp(remote, site=SITE, new_id=intent_id, sequence=sequence)
    return remote.commit_and_push(f"Intent {intent_id}\n\nIntent-Id: {intent_id}")


@contextlib.contextmanager
def running_agent(site: Site, *, interval: float = 1.0) -> Iterator[agent.Agent]:
    target = kube.connect(kubeconfig=site.target.kubeconfig)
    site.state_dir.mkdir(parents=True, exist_ok=True)
    with site.store.lock():
        running = agent.Agent(options=site.options, store=site.store, target=target,
                              interval=interval).start()
        try:
            yield running
        finally:
            running.stop()
            target.close()


def history(site: Site) -> dict[str, state.HistoryEntry]:
    return {h.id: h for h in site.store.load().history if h.outcome is not state.Outcome.REFUSED}


def rollout_phase(site: Site) -> tuple[str | None, str | None, list[str]]:
    if not site.store.path.exists():
        return None, None, []
    record = site.store.load().rollout
    if record is None:
        return None, None, []
    return record.intent_id, record.phase.value, [w.phase.value for w in record.waves]


def test_wave_20_starts_only_after_wave_10_is_ready(any_cluster: ClusterUnderTest,
                                                   remote: gitrepo.GitRemote, tmp_path: Path):
    """NetworkFunctions (wave 20) are applied only after the WorkloadCluster reports Ready."""
    slow_cluster(remote, 2)
    remote.commit_and_push("A slow workload cluster")
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    result = site.sync()
    assert result.ok, result.message
    recorded = site.store.load().rollout
    assert recorded is not None
    assert [(w.wave, w.phase.value) for w in recorded.waves] == [
        (0, "healthy"), (10, "healthy"), (20, "healthy")]
    if any_cluster.has_request_log:
        requests = any_cluster.requests()
        ready_writes = [r.time for r in requests if r.name == "sfo-wc-01"
                        and r.path.endswith("/status") and r.verb == "patch"]
        nf_applies = [r.time for r in requests if r.kind == "NetworkFunction"
                      and r.patch_type == "apply" and not r.path.endswith("/status")]
        assert len(ready_writes) >= 2 and nf_applies, [  # Provisioning, then Ready
            (r.verb, r.name, r.path[-30:]) for r in requests if r.name == "sfo-wc-01"]
        assert max(ready_writes) < min(nf_applies)


def test_new_intent_aborts_the_waiting_rollout(any_cluster: ClusterUnderTest,
                                              remote: gitrepo.GitRemote, tmp_path: Path):
    """Intent B landing while A waits on wave 10 aborts A: no request for A after B's
    acceptance, A's wave 20 never sent, A Aborted superseded by B, B Succeeded."""
    slow_cluster(remote, 60)
    gitrepo.restamp(remote, site=SITE, new_id="intent-a", sequence=2)
    remote.commit_and_push("Intent A")
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    with running_agent(site):
        wait_for("A waiting on wave 10",
                 lambda: rollout_phase(site) == ("intent-a", "Progressing",
                                                 ["healthy", "waiting", "pending"]))
        new_intent(remote, "intent-b", 3, k8s="v1.31.0")
        wait_for("B to succeed", lambda: history(site).get("intent-b") is not None
                 and history(site)["intent-b"].outcome is state.Outcome.SUCCEEDED)
    entries = history(site)
    assert entries["intent-a"].outcome is state.Outcome.ABORTED
    assert entries["intent-a"].superseded_by == "intent-b"
    assert entries["intent-a"].message == "Aborted (superseded by intent-b)"
    accepted = site.store.load().accepted
    assert accepted is not None and accepted.id == "intent-b"
    nfs = kubectl(any_cluster, "get", "networkfunctions", "-n", "sfo-ran", "-o", "json")
    assert {i["metadata"]["annotations"][contract.ANNOTATION_INTENT_ID]
            for i in nfs["items"]} == {"intent-b"}
    if any_cluster.has_request_log:
        accepted_at = state.parse_time(accepted.accepted_at).timestamp()
        carrying_a = [r for r in any_cluster.requests() if r.intent_id == "intent-a"]
        assert carrying_a and max(r.time for r in carrying_a) < accepted_at
        # Handled, not only sent, before: no write of A took effect after B's acceptance.
        assert max(r.handled for r in carrying_a if 200 <= r.status < 300) < accepted_at
        assert not [r for r in carrying_a if r.kind == "NetworkFunction"]


def test_quick_succession_completes_only_the_last(any_cluster: ClusterUnderTest,
                                                 remote: gitrepo.GitRemote, tmp_path: Path):
    """Several intents pushed quickly: only the last completes, and none applies out of order."""
    slow_cluster(remote, 60)
    gitrepo.restamp(remote, site=SITE, new_id="intent-2", sequence=2)
    remote.commit_and_push("Intent 2")
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    with running_agent(site):
        wait_for("intent 2 waiting", lambda: rollout_phase(site)[2][1:2] == ["waiting"])
        for number in (3, 4, 5):
            new_intent(remote, f"intent-{number}", number, k8s=f"v1.3{number}.0")
        wait_for("intent 5 to succeed", lambda: history(site).get("intent-5") is not None
                 and history(site)["intent-5"].outcome is state.Outcome.SUCCEEDED)
    entries = history(site)
    assert all(entries[f"intent-{n}"].outcome is state.Outcome.ABORTED
               for n in (2, 3, 4) if f"intent-{n}" in entries)
    if any_cluster.has_request_log:
        order = [int(r.intent_id.split("-")[1]) for r in any_cluster.requests()
                 if r.intent_id and r.intent_id.startswith("intent-")]
        assert order == sorted(order), "an older intent's request came after a newer one's"


def test_prune_removes_only_what_is_no_longer_desired_after_success(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """A manifest removed from Git is pruned after the new intent succeeds, not before;
    an object marked prune: disabled is kept."""
    path = "sites/edge-sfo-01/manifests/40-extra.yaml"
    remote.write(path, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n"
                       "  namespace: sfo-ran\n  annotations:\n"
                       "    reconciler.dev/intent-id: sfo-baseline-1\n"
                       "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keeper\n"
                       "  namespace: sfo-ran\n  annotations:\n"
                       "    reconciler.dev/intent-id: sfo-baseline-1\n"
                       "    reconciler.dev/prune: disabled\n")
    remote.commit_and_push("Two extra config maps")
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync().ok
    remote.remove(path)
    failing = remote.read(WC_FILE).replace("    reconciler.dev/wave: \"10\"",
                                           "    reconciler.dev/wave: \"10\"\n"
                                           f"    {controllers.FAIL_ANNOTATION}: \"true\"")
    remote.write(WC_FILE, failing.replace("kubernetesVersion: v1.30.2",
                                          "kubernetesVersion: v1.31.0"))
    gitrepo.restamp(remote, site=SITE, new_id="sfo-2", sequence=2)
    remote.commit_and_push("Drop the extras; the cluster upgrade will fail")
    failed = site.sync()
    assert not failed.ok
    names = {i["metadata"]["name"] for i in kubectl(
        any_cluster, "get", "configmaps", "-n", "sfo-ran", "-o", "json")["items"]}
    assert {"extra", "keeper"} <= names  # never pruned after a failure
    remote.write(WC_FILE, remote.read(WC_FILE).replace(
        f"    {controllers.FAIL_ANNOTATION}: \"true\"\n", "").replace(
        "kubernetesVersion: v1.31.0", "kubernetesVersion: v1.31.1"))
    gitrepo.restamp(remote, site=SITE, new_id="sfo-3", sequence=3)
    remote.commit_and_push("Fix the upgrade")
    fixed = site.sync()
    assert fixed.ok, fixed.message
    assert [str(r.ref) for r in fixed.results if r.change.value == "deleted"] == [
        "ConfigMap/sfo-ran/extra"]
    names = {i["metadata"]["name"] for i in kubectl(
        any_cluster, "get", "configmaps", "-n", "sfo-ran", "-o", "json")["items"]}
    assert "extra" not in names and "keeper" in names
    assert "sfo-site-config" in names
    inventory = {e.name for e in site.store.load().inventory}
    assert "extra" not in inventory and "keeper" not in inventory


def test_drift_is_corrected_without_writing_unchanged_objects(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """An object edited and one deleted out of band are re-applied; nothing else is written."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync().ok
    wait_until_ready(any_cluster)
    kubectl(any_cluster, "patch", "configmap", "sfo-site-config", "-n", "sfo-ran",
            "--type=merge", "-p", '{"data":{"dnn":"edited-by-hand"}}')
    kubectl(any_cluster, "delete", "networkfunction", "sfo-smf", "-n", "sfo-ran")
    wait_until_ready(any_cluster)
    mark = any_cluster.mark()
    result = site.sync()
    assert result.ok, result.message
    changes = {str(r.ref): r.change.value for r in result.results if r.intent_id}
    assert changes["ConfigMap/sfo-ran/sfo-site-config"] == "configured"
    assert changes["NetworkFunction/sfo-ran/sfo-smf"] == "created"
    assert {v for k, v in changes.items()
            if k not in ("ConfigMap/sfo-ran/sfo-site-config",
                         "NetworkFunction/sfo-ran/sfo-smf")} == {"unchanged"}
    if any_cluster.has_request_log:
        written = sorted({w.split(" ")[1].rsplit("/", 1)[1]
                          for w in any_cluster.changed_since(mark)})
        assert written == ["sfo-site-config", "sfo-smf"]
    assert kubectl(any_cluster, "get", "configmap", "sfo-site-config", "-n", "sfo-ran",
                   "-o", "jsonpath={.data.dnn}") == "internet"


def start_cli_agent(site: Site, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", "run", "--repo", site.url, "--site", SITE,
         "--state-dir", str(site.state_dir), "--interval", "1", *extra],
        env={**os.environ, "KUBECONFIG": str(site.target.kubeconfig)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_ends_the_wait_and_exits_0_within_5_seconds(any_cluster: ClusterUnderTest,
                                                            remote: gitrepo.GitRemote,
                                                            tmp_path: Path):
    """SIGTERM during a health wait records the state and exits 0 within 5 seconds."""
    slow_cluster(remote, 60)
    remote.commit_and_push("A slow workload cluster")
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    process = start_cli_agent(site)
    try:
        wait_for("the wave 10 wait", lambda: rollout_phase(site)[2][1:2] == ["waiting"])
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        process.kill()
        _, stderr = process.communicate()
    assert code == 0, stderr
    assert elapsed < 5.0
    recorded = site.store.load().rollout
    assert recorded is not None and recorded.phase is state.Outcome.PROGRESSING
    assert "interrupted by shutdown" in recorded.message


class Lines:
    """A process's stderr, read as it comes (so a full pipe never blocks the process)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self._stream = process.stderr
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append(line)

    def seen(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def text(self) -> str:
        self._reader.join(5.0)
        return "".join(self.lines)


def test_sigterm_while_a_drain_waits_on_a_stalled_apply_exits_0_within_5_seconds(
        local_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """SIGTERM while the acceptance of a newer intent drains an apply the cluster has not
    answered exits 0 within 5 seconds without accepting it; the next start accepts it."""
    assert local_cluster.local is not None
    stall = local_cluster.faults.add(localcluster.Fault(
        verb="apply", path_regex=r"/workloadclusters/sfo-wc-01$", latency=30.0))
    site = Site(root=tmp_path, remote_url=remote.url, target=local_cluster)
    process = start_cli_agent(site)
    stderr = Lines(process)
    try:
        wait_for("the stalled apply", lambda: stall.hits >= 1)
        new_intent(remote, "intent-b", 2, k8s="v1.31.0")
        wait_for("the drain", lambda: stderr.seen(
            "aborting the rollout of sfo-baseline-1: superseded by intent-b"))
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=40)
        elapsed = time.monotonic() - started
    finally:
        process.kill()
        process.wait()
    assert code == 0, stderr.text()
    assert elapsed < 5.0, f"exited after {elapsed:.2f}s:\n{stderr.text()}"
    recorded = site.store.load()
    assert recorded.accepted is not None and recorded.accepted.id == "sfo-baseline-1"
    assert "intent-b" not in history(site)
    assert recorded.rollout is not None and recorded.rollout.intent_id == "sfo-baseline-1"
    assert recorded.rollout.phase is state.Outcome.PROGRESSING
    assert not [r for r in local_cluster.requests() if r.intent_id == "intent-b"]

    restarted = start_cli_agent(site)
    try:
        wait_for("intent-b to succeed", lambda: history(site).get("intent-b") is not None
                 and history(site)["intent-b"].outcome is state.Outcome.SUCCEEDED, timeout=60)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.communicate(timeout=10)
    entries = history(site)
    assert entries["sfo-baseline-1"].outcome is state.Outcome.ABORTED
    assert entries["sfo-baseline-1"].superseded_by == "intent-b"


def test_sigkill_mid_rollout_then_restart_converges(any_cluster: ClusterUnderTest,
                                                   remote: gitrepo.GitRemote, tmp_path: Path):
    """A reconciler killed mid-rollout resumes the accepted intent on restart and finishes."""
    slow_cluster(remote, 4)
    remote.commit_and_push("A slow workload cluster")
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    first = start_cli_agent(site)
    try:
        wait_for("the wave 10 wait", lambda: rollout_phase(site)[2][1:2] == ["waiting"])
        first.kill()
        first.wait(timeout=10)
    finally:
        first.kill()
        first.communicate()
    assert rollout_phase(site)[1] == "Progressing"
    second = start_cli_agent(site)
    try:
        wait_for("the rollout to finish",
                 lambda: rollout_phase(site)[1] == "Succeeded", timeout=60)
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=10)
    entries = history(site)
    assert list(entries) == ["sfo-baseline-1"]
    assert entries["sfo-baseline-1"].outcome is state.Outcome.SUCCEEDED


def test_an_idle_agent_stays_idle_and_wakes_on_a_push(local_cluster: ClusterUnderTest,
                                                     remote: gitrepo.GitRemote,
                                                     tmp_path: Path):
    """With a long poll interval the agent does not fetch in a loop; a push wakes it."""
    site = Site(root=tmp_path, remote_url=str(remote.bare), target=local_cluster)
    with running_agent(site, interval=600.0) as running:
        wait_for("the first rollout", lambda: rollout_phase(site)[1] == "Succeeded")
        wait_for("the agent to go idle", lambda: running.idle)
        passes = running.passes
        threading.Event().wait(2.0)
        assert running.passes - passes <= 1  # reading the refs must not trigger a pass
        new_intent(remote, "woken", 2, k8s="v1.31.0")
        wait_for("the push to be seen", lambda: history(site).get("woken") is not None
                 and history(site)["woken"].outcome is state.Outcome.SUCCEEDED, timeout=20)
