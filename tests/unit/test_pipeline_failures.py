"""A failure injected at every stage of a pass leaves a record that agrees with itself.

Each case makes one stage raise an exception that is not a ReconcilerError (a bug, an
unforeseen answer), or makes a save of the state fail, and checks afterwards: the pass is
not `ok`; the state on disk parses; its last sync, rollout record and history agree
(`state.problems()` is empty); the error is recorded with its stage; and the next pass,
with the fault gone, converges.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler import errors
from reconciler.repo import bundle, schemas, source
from reconciler.site import fence, health, state
from tests import gitrepo, sites

SITE = "edge-sfo-01"


class Injected(RuntimeError):
    """The fault: not a ReconcilerError, so nothing in the pipeline expects it."""


def boom(*_args: Any, **_kwargs: Any) -> Any:
    raise Injected("injected fault")


class FailingStore(state.FileStateStore):
    """A state store whose save number `fail_at` (0-based, counted from arming) fails as a
    full disk does; every other save goes through."""

    def __init__(self, *, state_dir: Path, site: str) -> None:
        super().__init__(state_dir=state_dir, site=site)
        self.fail_at: int | None = None
        self.saves = 0

    def save(self, state_: state.SiteState) -> None:
        index, self.saves = self.saves, self.saves + 1
        if index == self.fail_at:
            raise errors.StateError(f"{self.path}: cannot write the state (No space left on "
                                    "device); the previous state is kept")
        super().save(state_)


class Env(sites.Env):
    store: FailingStore

    def __init__(self, tmp_path: Path, remote: gitrepo.GitRemote) -> None:
        super().__init__(tmp_path, remote, store_type=FailingStore)

    def new_intent_without_the_config_map(self) -> None:
        """Intent 2: the ConfigMap's manifest is gone, so a successful rollout prunes it."""
        (self.remote.work / "sites" / SITE / "manifests" / "30-configmap.yaml").unlink()
        gitrepo.restamp(self.remote, site=SITE, new_id="intent-2", sequence=2)
        self.remote.commit_and_push("Intent 2: no site config")


@pytest.fixture
def env(tmp_path: Path, remote: gitrepo.GitRemote) -> Env:
    return Env(tmp_path, remote)


def assert_agrees(env: Env, *, stage: str | None) -> state.SiteState:
    """The record on disk agrees with itself; the error of `stage` is recorded."""
    recorded = env.store.load()
    assert state.problems(recorded) == []
    assert recorded.last_sync is not None
    if stage is not None:
        assert recorded.last_sync.result == "failed", recorded.last_sync
        assert recorded.errors and recorded.errors[-1].stage == stage, recorded.errors
        assert "injected fault" in recorded.errors[-1].message
        assert recorded.errors[-1].message == recorded.last_sync.message
    return recorded


def assert_recovers(env: Env) -> None:
    """With the fault gone, the next pass converges and the record still agrees."""
    result = env.sync()
    assert result.ok, result.message
    recorded = env.store.load()
    assert state.problems(recorded) == []
    assert recorded.last_sync is not None and recorded.last_sync.result == "ok"
    assert recorded.rollout is not None and recorded.rollout.phase is state.Outcome.SUCCEEDED


FRONT = {
    "fetch": lambda mp: mp.setattr(source.Source, "fetch", boom),
    "bundle": lambda mp: mp.setattr(bundle, "load", boom),
    "validate": lambda mp: mp.setattr(schemas, "check_manifests", boom),
    "fence": lambda mp: mp.setattr(fence, "decide", boom),
    "accept": lambda mp: mp.setattr(state, "accept", boom),
}


@pytest.mark.parametrize("stage", list(FRONT))
def test_front_half_failure_is_recorded_failed_and_applies_nothing(
        env: Env, stage: str, monkeypatch: pytest.MonkeyPatch):
    """A fault at fetch, bundle, validate, fence or accept ends the pass failed, records
    the error with its stage, applies nothing, and keeps the last good intent in force."""
    assert env.sync().ok
    before = env.store.load()
    gitrepo.restamp(env.remote, site=SITE, new_id="intent-2", sequence=2)
    env.remote.commit_and_push("Intent 2")
    env.cluster.calls.clear()
    with monkeypatch.context() as mp:
        FRONT[stage](mp)
        result = env.sync()
    assert not result.ok
    assert f"{stage} failed: internal error: Injected: injected fault" in result.message
    assert not [call for call in env.cluster.calls if call[0] in ("apply", "delete")]
    recorded = assert_agrees(env, stage=stage)
    assert recorded.accepted == before.accepted
    assert recorded.rollout == before.rollout
    assert_recovers(env)
    assert env.store.load().accepted.id == "intent-2"  # type: ignore[union-attr]


@pytest.mark.parametrize("wave_object", ["Namespace/sfo-ran", "WorkloadCluster/sfo-ran/sfo-wc-01",
                                         "NetworkFunction/sfo-ran/sfo-upf"])
def test_apply_failure_in_each_wave_fails_the_rollout_and_its_history(
        env: Env, wave_object: str, monkeypatch: pytest.MonkeyPatch):
    """A fault while applying an object of wave 0, 10 or 20 fails that wave, the rollout
    and its history entry alike, and the pass; later waves are not started."""
    real_apply = env.cluster.apply

    def apply(obj: Any, **kwargs: Any) -> Any:
        if f"{obj['kind']}/{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}" \
                .replace("//", "/") == wave_object:
            raise Injected("injected fault")
        return real_apply(obj, **kwargs)

    monkeypatch.setattr(env.cluster, "apply", apply)
    result = env.sync()
    assert not result.ok and result.phase is state.Outcome.FAILED
    recorded = assert_agrees(env, stage="apply")
    assert recorded.rollout is not None and recorded.rollout.phase is state.Outcome.FAILED
    phases = [w.phase for w in recorded.rollout.waves]
    failed = phases.index(state.WavePhase.FAILED)
    assert all(p is state.WavePhase.HEALTHY for p in phases[:failed])
    assert all(p is state.WavePhase.PENDING for p in phases[failed + 1:])
    assert recorded.history[-1].outcome is state.Outcome.FAILED
    monkeypatch.setattr(env.cluster, "apply", real_apply)
    assert_recovers(env)


def test_health_wait_failure_fails_the_rollout(env: Env, monkeypatch: pytest.MonkeyPatch):
    """A fault while a wave waits for health fails the rollout, never records it ok."""
    with monkeypatch.context() as mp:
        mp.setattr(health, "assess", boom)
        result = env.sync()
    assert not result.ok
    recorded = assert_agrees(env, stage="apply")
    assert recorded.rollout is not None and recorded.rollout.phase is state.Outcome.FAILED
    assert recorded.rollout.waves[0].phase is state.WavePhase.FAILED
    assert_recovers(env)


def test_prune_failure_fails_the_rollout_and_keeps_the_inventory(
        env: Env, monkeypatch: pytest.MonkeyPatch):
    """A fault while pruning fails the pass with stage prune; the object to prune stays in
    the inventory, so the next successful pass prunes it."""
    assert env.sync().ok
    env.new_intent_without_the_config_map()
    with monkeypatch.context() as mp:
        mp.setattr(env.cluster, "delete", boom)
        result = env.sync()
    assert not result.ok
    recorded = assert_agrees(env, stage="prune")
    assert recorded.rollout is not None and recorded.rollout.phase is state.Outcome.FAILED
    assert any(e.name == "sfo-site-config" for e in recorded.inventory)
    assert_recovers(env)
    assert not any(e.name == "sfo-site-config" for e in env.store.load().inventory)
    assert not any(ref.name == "sfo-site-config" for ref in env.cluster.objects)


def saves_of_a_pass(tmp_path: Path, remote: gitrepo.GitRemote) -> int:
    """How many saves one pass that accepts, rolls out and prunes makes."""
    probe = Env(tmp_path / "probe", remote)
    assert probe.sync().ok
    remote.reset_hard("HEAD")
    probe.new_intent_without_the_config_map()
    probe.store.saves = 0
    assert probe.sync().ok
    remote.reset_hard("HEAD~1")
    remote.push(force=True)
    return probe.store.saves


SAVES_OF_A_PASS = 14  # start, fetch, accept, rollout start, 9 wave steps, the ending


@pytest.mark.parametrize("fail_at", range(SAVES_OF_A_PASS))
def test_failed_save_at_any_point_fails_the_pass_and_leaves_a_true_record(
        env: Env, tmp_path: Path, remote: gitrepo.GitRemote, fail_at: int):
    """Whichever save of a pass fails (a full disk), the pass is not ok, the state file
    holds the last record that could be written and agrees with itself, nothing is applied
    for an intent whose acceptance was not saved, and the next pass converges."""
    assert saves_of_a_pass(tmp_path, remote) == SAVES_OF_A_PASS
    assert env.sync().ok
    env.new_intent_without_the_config_map()
    env.store.saves, env.store.fail_at = 0, fail_at
    env.cluster.calls.clear()
    result = env.sync()
    assert not result.ok
    assert "No space left on device" in result.message
    recorded = env.store.load()
    assert state.problems(recorded) == []
    if recorded.accepted is not None and recorded.accepted.id == "sfo-baseline-1":
        # The acceptance of intent-2 was never saved: nothing was applied for it.
        applied = [c for c in env.cluster.calls if c[0] in ("apply", "delete")]
        assert applied == [], applied
    env.store.fail_at = None
    assert_recovers(env)
    final: Callable[[], state.SiteState] = env.store.load
    assert final().accepted.id == "intent-2"  # type: ignore[union-attr]
    assert not any(e.name == "sfo-site-config" for e in final().inventory)
