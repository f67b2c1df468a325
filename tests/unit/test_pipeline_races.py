"""Interleavings of the agent's watcher (accepting a newer intent, or stopping) and its
worker (executing a plan), replayed deterministically through the pipeline's two halves,
each checked against the record's own invariant, `state.problems()`."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler import cluster, errors
from reconciler.repo import documents, source
from reconciler.site import abort as aborts
from reconciler.site import agent, fence, pipeline, rollout, state
from tests import gitrepo, sites

SITE = "edge-sfo-01"
OLD = "sfo-baseline-1"
NEW = "intent-2"


class Env(sites.Env):
    """The site, with the agent's two halves run one step at a time."""

    def __init__(self, tmp_path: Path, remote: gitrepo.GitRemote) -> None:
        super().__init__(tmp_path, remote)
        self.box = pipeline.SiteBox(self.store)
        self.repo = source.Source(url=remote.url, branch=self.options.branch,
                                  cache_dir=self.options.cache_dir)

    def evaluate(self) -> pipeline.Plan:
        plan, result = pipeline.evaluate(box=self.box, repo=self.repo, options=self.options)
        assert plan is not None, result
        return plan

    def execute(self, plan: pipeline.Plan, abort: aborts.Abort) -> pipeline.SyncResult:
        return pipeline.execute(box=self.box, plan=plan, target=self.cluster,
                                options=self.options, abort=abort)

    def push_newer_intent(self) -> None:
        gitrepo.restamp(self.remote, site=SITE, new_id=NEW, sequence=2)
        self.remote.commit_and_push(f"Intent {NEW}")

    def accept_newer(self, running: aborts.Abort) -> None:
        """What the watcher does: set the running rollout's abort, then record the accept."""
        running.set(f"superseded by {NEW}", superseded_by=NEW)
        self.push_newer_intent()
        assert self.evaluate().decision.verdict is fence.Verdict.ACCEPT


@pytest.fixture
def env(tmp_path: Path, remote: gitrepo.GitRemote) -> Env:
    return Env(tmp_path, remote)


def rolled_out(env: Env) -> None:
    plan = env.evaluate()
    assert env.execute(plan, aborts.Abort()).ok
    assert state.problems(env.store.load()) == []


def test_drift_pass_stopped_by_shutdown_leaves_a_record_that_agrees(env: Env):
    """Stopping the agent while it runs a drift pass (what it runs on every idle poll)
    leaves a last sync, rollout record and errors that agree."""
    rolled_out(env)
    drift = env.evaluate()  # keep: the same intent at the same commit
    signal = aborts.Abort()
    signal.shut_down()  # agent.stop() while the worker runs the drift pass
    env.execute(drift, signal)
    assert state.problems(env.store.load()) == []


def test_drift_pass_superseded_leaves_a_record_that_agrees(env: Env):
    """A newer intent accepted while a drift pass runs leaves a record that agrees."""
    rolled_out(env)
    drift = env.evaluate()
    signal = aborts.Abort()
    env.accept_newer(signal)  # the watcher wins the race to the box
    env.execute(drift, signal)
    assert state.problems(env.store.load()) == []


def test_plan_of_a_newer_commit_superseded_before_it_starts_keeps_history_true(env: Env):
    """The worker took a plan for a new commit of the accepted intent, and the watcher
    recorded a newer intent before the worker's first save: the old rollout record must
    not turn Aborted while its history entry says Succeeded."""
    rolled_out(env)
    env.remote.write(f"sites/{SITE}/manifests/zz-note.txt", "a new commit, same intent\n")
    env.remote.commit_and_push("same intent, new commit")
    converge = env.evaluate()
    assert converge.decision.verdict is fence.Verdict.KEEP
    signal = aborts.Abort()
    env.accept_newer(signal)
    env.execute(converge, signal)
    assert state.problems(env.store.load()) == []


def test_rollout_that_succeeds_as_a_newer_intent_is_accepted_does_not_say_ok(
        env: Env, monkeypatch: pytest.MonkeyPatch):
    """The watcher records a newer intent between the old rollout's last health read and
    its ending: the record must not say the last sync was ok for an intent superseded."""
    first = env.evaluate()
    signal = aborts.Abort()
    real_run = rollout.run

    def run_then_watcher_accepts(**kwargs: Any) -> rollout.Result:
        outcome = real_run(**kwargs)
        env.accept_newer(signal)  # concurrently, in the agent
        return outcome

    monkeypatch.setattr(rollout, "run", run_then_watcher_accepts)
    env.execute(first, signal)
    assert state.problems(env.store.load()) == []


def test_superseded_rollout_ending_saved_before_the_acceptance_agrees(env: Env):
    """The worker's ending wins the race to the box (or the acceptance's save then fails,
    or the process dies): the record must not say the rollout was superseded by an intent
    it does not hold, with its history entry still Progressing."""
    first = env.evaluate()
    signal = aborts.Abort()
    signal.set(f"superseded by {NEW}", superseded_by=NEW)  # the watcher, before its save
    env.execute(first, signal)
    recorded = env.store.load()
    assert recorded.accepted is not None and recorded.accepted.id == OLD
    assert state.problems(recorded) == []


def test_object_applied_in_a_failed_group_enters_the_inventory(env: Env):
    """An object the rollout created stays known (in the inventory) even when another
    object of its kind group failed to apply; else no later rollout can prune it."""
    env.cluster.fail["NetworkFunction/sfo-ran/sfo-smf"] = errors.ApplyError("refused")
    plan = env.evaluate()
    assert not env.execute(plan, aborts.Abort()).ok
    live = {ref.inventory_id for ref, obj in env.cluster.objects.items()
            if ref.kind != "CustomResourceDefinition"  # crds/: never a site's
            and obj["metadata"].get("labels", {}).get("reconciler.dev/site") == SITE}
    known = {e.id for e in env.store.load().inventory}
    assert live - known == set()


def test_agent_stopped_while_an_idle_drift_pass_waits_leaves_a_record_that_agrees(
        env: Env):
    """The agent's idle drift pass waits for an object that went unready out of band;
    SIGTERM (stop()) then must not leave a failed last sync that nothing else explains."""
    rolled_out(env)
    upf = cluster.ObjectRef("telco.example.com/v1alpha1", "NetworkFunction", "sfo-ran", "sfo-upf")
    env.cluster.objects[upf]["status"]["conditions"][0]["status"] = "False"  # a CNF restarts
    with env.store.lock():
        running = agent.Agent(options=env.options, store=env.store, target=env.cluster,
                              interval=3600.0, watch_files=False).start()
        deadline = time.monotonic() + 10
        while running.running_intent != OLD:  # the drift pass is in its health wait
            assert time.monotonic() < deadline
            threading.Event().wait(0.02)
        threading.Event().wait(0.3)
        assert running.stop()
    assert state.problems(env.store.load()) == []


def test_refusing_a_replay_at_its_old_commit_keeps_it_superseded():
    """Refusing a superseded intent seen again at the commit it was accepted at (history
    rewound with --allow-history-rewrite) keeps it among the superseded ids, so the next
    pass refuses it again instead of accepting it."""
    def intent(intent_id: str) -> documents.Intent:
        return documents.Intent(site="s", id=intent_id, sequence=None, description="",
                                health_timeout=60.0, prune=True,
                                location=documents.Location(file="i.yaml", document=0))

    now = "2026-12-01T00:00:00.000000Z"
    s = state.accept(state.SiteState(site="s"), intent=intent("i-1"), commit="a" * 40,
                     drops=(), now=now)
    s = state.accept(s, intent=intent("i-2"), commit="b" * 40, drops=(), now=now)
    decision = fence.decide(accepted=s.accepted, superseded=s.superseded_ids(),
                            intent=intent("i-1"), manifests=())
    assert decision.verdict is fence.Verdict.REFUSE
    s = state.refuse(s, intent=intent("i-1"), commit="a" * 40, reason=decision.reason, now=now)
    again = fence.decide(accepted=s.accepted, superseded=s.superseded_ids(),
                         intent=intent("i-1"), manifests=())
    assert again.verdict is fence.Verdict.REFUSE


def test_interrupt_in_the_front_half_does_not_leave_the_sync_running(
        env: Env, monkeypatch: pytest.MonkeyPatch):
    """Ctrl-C during the fetch of `reconciler sync` leaves a last sync that has ended, as
    an interrupt in the back half does, not one `running` with no process behind it."""
    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(source.Source, "fetch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        env.evaluate()
    recorded = env.store.load()
    assert recorded.last_sync is not None and recorded.last_sync.result != "running"
