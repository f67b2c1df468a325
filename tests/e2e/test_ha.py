"""High availability: two `reconciler run --state-store kubernetes` processes per site, one
Lease per site. Of the two exactly one applies; killed mid-rollout, the other takes over
within the lease's bound and finishes the rollout, and the API server's log shows no write
of the old leader after the new one's first. Several sites shared by the replicas."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import cluster, kube
from reconciler.site import kubestate, lease, state
from tests import gitrepo
from tests.e2e.conftest import SITE, ClusterUnderTest
from tests.e2e.test_agent import slow_cluster

pytestmark = pytest.mark.e2e

LEASE_SECONDS = 6.0  # renew every 2s, stop applying 4s after the last renewal began
OTHER_SITE = "edge-nyc-02"


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.05)


class Replicas:
    """Reconciler processes sharing one state namespace, and what the cluster holds."""

    def __init__(self, *, target: ClusterUnderTest, root: Path, url: str) -> None:
        self.target = target
        self.root = root
        self.url = url
        self.namespace = f"reconciler-ha-{uuid.uuid4().hex[:6]}"
        self.adapter = kube.connect(kubeconfig=target.direct_kubeconfig)
        self.adapter.apply({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": self.namespace}})
        self.processes: dict[str, subprocess.Popen[str]] = {}

    def start(self, name: str, *sites: str) -> subprocess.Popen[str]:
        flags = [arg for site in sites for arg in ("--site", site)]
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "run", "--repo", self.url, *flags,
             "--state-store", "kubernetes", "--state-namespace", self.namespace,
             "--lease-duration", f"{LEASE_SECONDS:g}s", "--interval", "1",
             "--state-dir", str(self.root / name / "state"), "-v"],
            env={**os.environ, "KUBECONFIG": str(self.target.kubeconfig), "POD_NAME": name},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.processes[name] = process
        return process

    def holder(self, site: str = SITE) -> str | None:
        live = self.adapter.get(cluster.ObjectRef("coordination.k8s.io/v1", "Lease",
                                                  self.namespace, lease.lease_name(site)))
        return ((live or {}).get("spec") or {}).get("holderIdentity")

    def record(self, site: str = SITE) -> state.SiteState:
        return kubestate.KubeStateStore(target=self.adapter, namespace=self.namespace,
                                        site=site).load()

    def rollout(self, site: str = SITE) -> tuple[str | None, list[str]]:
        record = self.record(site).rollout
        if record is None:
            return None, []
        return record.phase.value, [w.phase.value for w in record.waves]

    def close(self) -> dict[str, str]:
        logs = {}
        for name, process in self.processes.items():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            process.kill()
            logs[name] = process.communicate()[1]
        self.adapter.delete(cluster.ObjectRef("v1", "Namespace", None, self.namespace))
        self.adapter.close()
        return logs


@pytest.fixture
def replicas(any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote,
             tmp_path: Path) -> Iterator[Replicas]:
    group = Replicas(target=any_cluster, root=tmp_path, url=remote.url)
    try:
        yield group
    finally:
        logs = group.close()
        for name, text in logs.items():
            print(f"--- {name} ---\n{text[-4000:]}")


def audit_writes(path: Path, since: float) -> list[tuple[float, str, str]]:
    """(time, user agent, "verb resource/name") of every write the audit log holds."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        event: dict[str, Any] = json.loads(line)
        if event.get("stage") != "ResponseComplete" or event.get("verb") not in (
                "create", "update", "patch", "delete"):
            continue
        moment = datetime.datetime.fromisoformat(
            event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
        ref = event.get("objectRef") or {}
        if moment >= since:
            found.append((moment, event.get("userAgent", ""),
                          f"{event['verb']} {ref.get('resource')}/{ref.get('name')}"))
    return sorted(found)


def test_killed_leader_is_replaced_within_the_lease_and_the_rollout_resumes(
        replicas: Replicas, any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote) -> None:
    """Two agents for one site: exactly one applies. SIGKILL the leader while wave 10 waits:
    the other takes the Lease within its bound, resumes the rollout and finishes it; no
    write of the old leader comes after the new one's first (audit log, by user agent)."""
    slow_cluster(remote, 8)
    remote.commit_and_push("A slow workload cluster")
    since = time.time()
    first = replicas.start("replica-a", SITE)
    wait_for("replica-a to hold the lease",
             lambda: (replicas.holder() or "").startswith("replica-a_"))
    replicas.start("replica-b", SITE)
    wait_for("the wave 10 wait", lambda: replicas.rollout() == (
        "Progressing", ["healthy", "waiting", "pending"]))
    assert (replicas.holder() or "").startswith("replica-a_")
    killed = time.time()
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    wait_for("replica-b to take over", lambda: (replicas.holder() or "").startswith(
        "replica-b_"), timeout=3 * LEASE_SECONDS)
    takeover = time.time() - killed
    print(f"takeover {takeover:.2f}s after SIGKILL (lease {LEASE_SECONDS:g}s)")
    # The Lease expires at most one duration after the last renewal (at most one renew
    # period before the kill), and the taker looks every renew period.
    assert takeover <= LEASE_SECONDS + LEASE_SECONDS / 3 + 1.0
    wait_for("the rollout to finish", lambda: replicas.rollout()[0] == "Succeeded",
             timeout=90)
    record = replicas.record()
    assert [(h.id, h.outcome) for h in record.history] == [
        ("sfo-baseline-1", state.Outcome.SUCCEEDED)]
    if any_cluster.audit_log is not None:
        writes = audit_writes(any_cluster.audit_log, since)
        by_a = [w for w in writes if "replica-a_" in w[1]]
        by_b = [w for w in writes if "replica-b_" in w[1]]
        assert any("workloadclusters/" in w[2] for w in by_a), by_a  # a applied wave 10
        assert any("networkfunctions/" in w[2] for w in by_b), by_b  # b applied wave 20
        assert not any("networkfunctions/" in w[2] for w in by_a)
        # No overlap: every write of a precedes b's first, which follows the kill.
        assert max(w[0] for w in by_a) < min(w[0] for w in by_b), (by_a[-3:], by_b[:3])
        assert min(w[0] for w in by_b) > killed
    else:
        assert any_cluster.local is not None  # the request log has no user agent:
        applies = [r for r in any_cluster.writes(since) if r.namespace == "sfo-ran"]
        gap = [r for r in applies if killed < r.time < killed + LEASE_SECONDS * 2 / 3]
        assert not gap, gap  # nothing written for the site right after the kill


def test_replicas_share_several_sites_one_holder_each(replicas: Replicas) -> None:
    """`run --site A --site B` in two replicas: each site's Lease has one holder, both sites
    are reconciled, and stopping one replica hands its sites to the other at once."""
    one = replicas.start("replica-a", SITE, OTHER_SITE)
    replicas.start("replica-b", SITE, OTHER_SITE)
    for site in (SITE, OTHER_SITE):
        wait_for(f"{site} to be reconciled", lambda site=site: replicas.rollout(site)[0]
                 == "Succeeded", timeout=90)
        assert replicas.holder(site) is not None
    holders = {site: replicas.holder(site) for site in (SITE, OTHER_SITE)}
    one.send_signal(signal.SIGTERM)
    assert one.wait(timeout=10) == 0
    started = time.monotonic()
    for site in (SITE, OTHER_SITE):  # released on a clean stop: taken at once
        wait_for(f"replica-b to hold {site}", lambda site=site: (
            replicas.holder(site) or "").startswith("replica-b_"), timeout=LEASE_SECONDS)
    assert time.monotonic() - started < LEASE_SECONDS, holders
