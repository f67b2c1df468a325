"""The agent's acceptance of a newer intent against an apply still in flight, and its shutdown
while that acceptance drains, through real Git with our own Cluster port faked."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from reconciler import cluster, contract
from reconciler.site import agent, pipeline, state
from tests import fakes, gitrepo

SITE = "edge-sfo-01"
OLD = "sfo-baseline-1"  # the sample repository's intent
NEW = "intent-b"


class HangingCluster(fakes.FakeCluster):
    """Applies of `kind` block until `release` is set, as an HTTP apply waits for its answer."""

    def __init__(self, *, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.entered = threading.Event()
        self.release = threading.Event()
        self.answered_at: float | None = None  # epoch seconds, as the state records time

    def apply(self, obj: Mapping[str, Any], *, force: bool = False,
              dry_run: bool = False,
              field_manager: str = contract.SHARED_FIELD_MANAGER) -> cluster.Applied:
        if obj["kind"] == self.kind and not self.release.is_set():
            self.entered.set()
            self.release.wait(30.0)  # bounded like the client's read timeout
            self.answered_at = time.time()
        return super().apply(obj, force=force, dry_run=dry_run,
                             field_manager=field_manager)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.02)


@pytest.fixture
def hanging() -> Iterator[HangingCluster]:
    target = HangingCluster(kind="WorkloadCluster")
    yield target
    target.release.set()  # never leave a worker thread blocked after the test


@pytest.fixture
def store(tmp_path: Path) -> Iterator[state.FileStateStore]:
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    with store.lock():
        yield store


def start_agent(*, remote: gitrepo.GitRemote, store: state.FileStateStore,
                target: HangingCluster, tmp_path: Path) -> agent.Agent:
    """An agent that fetches only when triggered, its old rollout hanging in an apply."""
    options = pipeline.Options(url=remote.url, site=SITE, cache_dir=tmp_path / "cache")
    running = agent.Agent(options=options, store=store, target=target, interval=3600.0,
                          watch_files=False).start()
    assert target.entered.wait(10.0), "the old rollout never reached the hanging apply"
    return running


def land_newer_intent(remote: gitrepo.GitRemote, running: agent.Agent,
                      caplog: pytest.LogCaptureFixture) -> None:
    """Push a newer intent, trigger a fetch, and wait until its acceptance drains."""
    gitrepo.restamp(remote, site=SITE, new_id=NEW, sequence=2)
    remote.commit_and_push(f"Intent {NEW}\n\nIntent-Id: {NEW}")
    running.trigger()
    wait_for("the drain", lambda: any(f"superseded by {NEW}" in r.getMessage()
                                      for r in caplog.records))


def carried(target: fakes.FakeCluster) -> set[str]:
    return {o["metadata"].get("annotations", {}).get(contract.ANNOTATION_INTENT_ID, "")
            for o in target.objects.values()} - {""}


def test_stop_during_a_drain_returns_at_once_and_leaves_the_newer_intent_unaccepted(
        remote: gitrepo.GitRemote, store: state.FileStateStore, hanging: HangingCluster,
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """stop() while the acceptance of a newer intent drains a hanging apply returns within
    the shutdown bound, ends the watcher, and does not record the newer intent; the old
    rollout records itself as interrupted by shutdown once its apply answers."""
    caplog.set_level(logging.WARNING, logger="reconciler.site.agent")
    running = start_agent(remote=remote, store=store, target=hanging, tmp_path=tmp_path)
    land_newer_intent(remote, running, caplog)

    started = time.monotonic()
    ended = running.stop()
    assert time.monotonic() - started < 5.0
    watcher, worker = running._threads
    assert not watcher.is_alive()
    assert not ended and worker.is_alive()  # inside the apply: a blocked call cannot be ended
    recorded = store.load()
    assert recorded.accepted is not None and recorded.accepted.id == OLD
    assert NEW not in {h.id for h in recorded.history}

    hanging.release.set()
    worker.join(5.0)
    assert not worker.is_alive()
    recorded = store.load()
    assert recorded.accepted is not None and recorded.accepted.id == OLD
    assert recorded.rollout is not None and recorded.rollout.intent_id == OLD
    assert recorded.rollout.phase is state.Outcome.PROGRESSING
    assert recorded.rollout.superseded_by is None
    assert "interrupted by shutdown" in recorded.rollout.message
    assert [(h.id, h.outcome) for h in recorded.history] == [(OLD, state.Outcome.PROGRESSING)]
    assert carried(hanging) == {OLD}


def test_stop_during_a_drain_ends_every_thread_when_the_apply_answers_in_time(
        remote: gitrepo.GitRemote, store: state.FileStateStore, hanging: HangingCluster,
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """stop() while a drain waits, with an apply that answers within the shutdown bound,
    ends both threads promptly and records the old rollout as interrupted, not superseded."""
    caplog.set_level(logging.WARNING, logger="reconciler.site.agent")
    running = start_agent(remote=remote, store=store, target=hanging, tmp_path=tmp_path)
    land_newer_intent(remote, running, caplog)
    threading.Timer(0.5, hanging.release.set).start()
    started = time.monotonic()
    assert running.stop() is True
    assert time.monotonic() - started < agent.STOP_JOIN_TIMEOUT
    assert not any(thread.is_alive() for thread in running._threads)
    recorded = store.load()
    assert recorded.accepted is not None and recorded.accepted.id == OLD
    assert recorded.rollout is not None and recorded.rollout.superseded_by is None
    assert "interrupted by shutdown" in recorded.rollout.message
    assert [(h.id, h.outcome) for h in recorded.history] == [(OLD, state.Outcome.PROGRESSING)]


def test_newer_intent_is_recorded_only_after_the_apply_in_flight_answers(
        remote: gitrepo.GitRemote, store: state.FileStateStore, hanging: HangingCluster,
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """While the acceptance drains a hanging apply the agent stays responsive and the newer
    intent is not recorded; once the apply answers it is, and then rolled out."""
    caplog.set_level(logging.WARNING, logger="reconciler.site.agent")
    running = start_agent(remote=remote, store=store, target=hanging, tmp_path=tmp_path)
    try:
        land_newer_intent(remote, running, caplog)
        assert running.running_intent == OLD  # the agent's lock is free during the drain
        recorded = store.load()
        assert recorded.accepted is not None and recorded.accepted.id == OLD
        threading.Event().wait(0.2)
        hanging.release.set()
        wait_for(f"{NEW} to succeed", lambda: any(
            h.id == NEW and h.outcome is state.Outcome.SUCCEEDED for h in store.load().history))
    finally:
        running.stop()
    recorded = store.load()
    assert recorded.accepted is not None and recorded.accepted.id == NEW
    assert hanging.answered_at is not None
    assert state.parse_time(recorded.accepted.accepted_at).timestamp() >= hanging.answered_at
    old = next(h for h in recorded.history if h.id == OLD)
    assert old.outcome is state.Outcome.ABORTED and old.superseded_by == NEW
    assert carried(hanging) == {NEW}
