"""After a process died while it could write, its successor's first pass waits out the
API server's write deadline before anything else, so no write the dead process left in the
server's hands lands after a newer intent is accepted (issue #12 item 3)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from reconciler.repo import source
from reconciler.site import pipeline, state
from tests import gitrepo, sites

SITE = sites.SITE


class Env(sites.Env):
    def __init__(self, tmp_path: Path, remote: gitrepo.GitRemote) -> None:
        super().__init__(tmp_path, remote)
        self.options = dataclasses.replace(self.options, write_deadline=20.0)
        self.waits: list[float] = []
        self.stop = False

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return self.stop

    def evaluate(self) -> tuple[pipeline.Plan | None, pipeline.SyncResult | None]:
        box = pipeline.SiteBox(self.store)
        repo = source.Source(url=self.options.url, branch=self.options.branch,
                             cache_dir=self.options.cache_dir)
        with self.store.lock():
            return pipeline.evaluate(box=box, repo=repo, options=self.options,
                                     target=self.cluster, wait=self.wait)

    def kill_mid_rollout(self) -> None:
        """What a SIGKILL during a rollout leaves on disk: the sync still `running`, the
        rollout open."""
        current = self.store.load()
        assert current.rollout is not None
        self.store.save(dataclasses.replace(
            current,
            last_sync=state.SyncRecord(started_at=state.now(), commit=None, result="running"),
            rollout=dataclasses.replace(current.rollout, phase=state.Outcome.PROGRESSING,
                                        finished_at=None)))


def new_intent(env: Env) -> None:
    gitrepo.restamp(env.remote, site=SITE, new_id="intent-2", sequence=2)
    env.remote.commit_and_push("Intent 2")


@pytest.fixture
def env(tmp_path: Path, remote: gitrepo.GitRemote) -> Env:
    made = Env(tmp_path, remote)
    assert made.sync().ok
    return made


def test_a_newer_intent_waits_out_the_write_deadline_after_a_kill(env: Env) -> None:
    """Killed during intent 1's rollout, then intent 2 lands: the next process's first
    pass waits the write deadline once, then accepts intent 2."""
    env.kill_mid_rollout()
    new_intent(env)
    plan, ended = env.evaluate()
    assert ended is None and plan is not None
    assert env.waits == [20.0]
    recorded = env.store.load()
    assert recorded.accepted is not None and recorded.accepted.id == "intent-2"


def test_the_wait_comes_before_anything_the_pass_could_fail_at(env: Env,
                                                             tmp_path: Path) -> None:
    """The first pass waits before it fetches: a pass that then fails (the remote gone)
    has waited already, so the mark is never lost to a pass that ended in between."""
    env.kill_mid_rollout()
    env.options = dataclasses.replace(env.options, url=str(tmp_path / "no-such-remote"))
    plan, ended = env.evaluate()
    assert plan is None and ended is not None and not ended.ok
    assert env.waits == [20.0]


def test_a_kill_during_a_drift_pass_waits_too(env: Env) -> None:
    """Killed during a drift pass (the rollout record still says Succeeded, but the pass
    could have been re-applying): the next start waits as well."""
    current = env.store.load()
    assert current.rollout is not None and current.rollout.phase is state.Outcome.SUCCEEDED
    env.store.save(dataclasses.replace(current, last_sync=state.SyncRecord(
        started_at=state.now(), commit=None, result="running")))
    env.evaluate()
    assert env.waits == [20.0]


def test_no_wait_after_a_pass_that_ended(env: Env) -> None:
    """A newer intent after a pass that recorded its end is accepted at once."""
    new_intent(env)
    plan, _ = env.evaluate()
    assert plan is not None and env.waits == []


def test_only_a_processs_first_pass_waits(env: Env) -> None:
    """A later pass of the agent sees `running` from its own other thread (a rollout in
    progress), not a dead process: it does not wait."""
    env.kill_mid_rollout()
    box = pipeline.SiteBox(env.store)
    repo = source.Source(url=env.options.url, branch=env.options.branch,
                         cache_dir=env.options.cache_dir)
    with env.store.lock():
        pipeline.evaluate(box=box, repo=repo, options=env.options, target=env.cluster,
                          wait=env.wait, first=False)
    assert env.waits == []


def test_a_stop_during_the_wait_records_nothing(env: Env) -> None:
    """Stopped while waiting: the pass ends not ok, nothing is recorded (the sync still
    says `running`), so the next start waits again; intent 1 stays accepted."""
    env.kill_mid_rollout()
    new_intent(env)
    env.stop = True
    plan, ended = env.evaluate()
    assert plan is None and ended is not None and not ended.ok
    assert "write deadline" in ended.message
    recorded = env.store.load()
    assert recorded.last_sync is not None and recorded.last_sync.result == "running"
    assert recorded.accepted is not None and recorded.accepted.id != "intent-2"
    env.stop = False
    env.evaluate()
    assert env.waits == [20.0, 20.0]


def test_killed_while_writing_reads_the_record() -> None:
    """Only a `running` sync with an intent in force counts: a site that never accepted
    an intent wrote nothing."""
    base = state.SiteState(site=SITE)
    running = state.SyncRecord(started_at=state.now(), commit=None, result="running")
    assert state.killed_while_writing(base) is None
    assert state.killed_while_writing(dataclasses.replace(base, last_sync=running)) is None
