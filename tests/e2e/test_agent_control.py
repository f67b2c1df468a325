"""`reconciler reconcile`, `suspend` and `resume` against a running agent, through the real
command line and the site's control record, on the embedded cluster."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler import kube
from reconciler.site import agent, control, state
from tests import gitrepo
from tests.e2e.conftest import SITE, ClusterUnderTest, Site

pytestmark = pytest.mark.e2e

LONG = 600.0  # the agent's poll interval: only a request can make it fetch within a test


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.05)


@contextlib.contextmanager
def running_agent(site: Site) -> Iterator[agent.Agent]:
    """The agent as `reconciler run` makes it: a long interval, no file watch, and the
    site's control record."""
    target = kube.connect(kubeconfig=site.target.kubeconfig)
    site.state_dir.mkdir(parents=True, exist_ok=True)
    channel = control.FileChannel(state_dir=site.state_dir, site=SITE)
    with site.store.lock():
        running = agent.Agent(options=site.options, store=site.store, target=target,
                              interval=LONG, watch_files=False,
                              control_channel=channel).start()
        try:
            yield running
        finally:
            running.stop()
            target.close()


def accepted(site: Site) -> str | None:
    if not site.store.path.exists():
        return None
    record = site.store.load()
    return record.accepted.id if record.accepted else None


def succeeded(site: Site, intent_id: str) -> bool:
    if not site.store.path.exists():
        return False
    rollout = site.store.load().rollout
    return rollout is not None and rollout.intent_id == intent_id \
        and rollout.phase is state.Outcome.SUCCEEDED


def control_flags(site: Site) -> list[str]:
    return ["--site", SITE, "--state-dir", str(site.state_dir)]


def test_reconcile_makes_the_running_agent_fetch_at_once(
        local_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path) -> None:
    """With a ten-minute poll interval, `reconciler reconcile --wait` gets a new intent
    accepted and rolled out within seconds, and exits 0 when that pass ended ok."""
    site = Site(root=tmp_path, remote_url=remote.url, target=local_cluster)
    with running_agent(site) as running:
        wait_for("the first intent to roll out",
                 lambda: accepted(site) is not None and succeeded(site, accepted(site) or ""))
        first = accepted(site)
        gitrepo.restamp(remote, site=SITE, new_id="intent-next", sequence=50)
        remote.commit_and_push("Intent next\n\nIntent-Id: intent-next")
        threading.Event().wait(1.5)
        assert accepted(site) == first  # no poll, no file watch: nothing noticed it yet
        started = time.monotonic()
        done = site.cli("reconcile", *control_flags(site), "--wait", "--timeout", "1m")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "reconcile requested" in done.stdout and "sync ok" in done.stdout
        assert time.monotonic() - started < 30
        assert accepted(site) == "intent-next"
        assert succeeded(site, "intent-next")
        assert running.passes >= 2


def test_suspended_site_applies_nothing_until_resumed(
        local_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path) -> None:
    """A suspended site neither accepts nor applies a new intent, even when asked to
    reconcile; `status` says who suspended it and why; `resume` makes the agent apply
    the new intent at once."""
    site = Site(root=tmp_path, remote_url=remote.url, target=local_cluster)
    with running_agent(site) as running:
        wait_for("the first intent to be accepted", lambda: accepted(site) is not None)
        first = accepted(site)
        wait_for("its rollout to end", lambda: running.idle and succeeded(site, first or ""))
        done = site.cli("suspend", *control_flags(site), "--reason", "maintenance CHG-1",
                        "--by", "alice")
        assert done.returncode == 0, done.stderr
        wait_for("the agent to record the suspension",
                 lambda: site.store.load().suspended is not None)
        recorded = site.store.load().suspended
        assert recorded is not None and (recorded.by, recorded.reason) == ("alice",
                                                                          "maintenance CHG-1")

        gitrepo.restamp(remote, site=SITE, new_id="intent-held", sequence=60)
        remote.commit_and_push("Intent held\n\nIntent-Id: intent-held")
        refused = site.cli("reconcile", *control_flags(site))
        assert refused.returncode == 1 and "is suspended by alice" in refused.stderr
        running.trigger()  # a push event: a suspended site does not even fetch
        threading.Event().wait(2.5)
        assert accepted(site) == first

        status = site.cli("status", *control_flags(site))
        assert status.returncode == 0, status.stderr
        assert "Suspended:     by alice" in status.stdout
        assert "maintenance CHG-1" in status.stdout

        resumed = site.cli("resume", *control_flags(site))
        assert resumed.returncode == 0 and "resumed" in resumed.stdout
        wait_for("the held intent to roll out after the resume",
                 lambda: succeeded(site, "intent-held"), timeout=30)
        assert site.store.load().suspended is None


def test_sync_refuses_a_suspended_site(local_cluster: ClusterUnderTest,
                                       remote: gitrepo.GitRemote, tmp_path: Path) -> None:
    """`reconciler sync` of a suspended site does nothing and exits 1, saying who suspended
    it and how to resume; after `resume` it syncs."""
    site = Site(root=tmp_path, remote_url=remote.url, target=local_cluster)
    assert site.cli("suspend", *control_flags(site), "--by", "bob").returncode == 0
    synced = site.sync_cli()
    assert synced.returncode == 1
    assert "is suspended by bob" in synced.stderr
    assert f"reconciler resume --site {SITE}" in synced.stderr
    assert not site.store.path.exists()
    assert site.cli("resume", *control_flags(site)).returncode == 0
    assert site.sync_cli().returncode == 0
