"""The inventory is written ahead: a kill at any apply leaves no object the site forgets.

Each case kills the pass (as SIGKILL does: nothing after the kill runs, not even the
`finally` that saves the outcome) at one apply of intent 2's rollout, right after the
server took the write. A newer intent 3 that no longer has intent 2's new objects then
rolls out; after it succeeds no object of intent 2 that intent 3 does not want is left.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from reconciler import cluster, contract
from reconciler.site import state
from tests import fakes, gitrepo, sites

SITE = sites.SITE
NEW = ("sfo-extra-a", "sfo-extra-b", "sfo-extra-c")  # intent 2's new ConfigMaps, waves 0..2


class Killed(BaseException):
    """The process died: not an Exception, so no handler of the pipeline catches it."""


class DyingStore(state.FileStateStore):
    """A store that stops writing once the process is dead: what was saved stays."""

    dead = False

    def save(self, state_: state.SiteState) -> None:
        if not self.dead:
            super().save(state_)


class DyingCluster(fakes.FakeCluster):
    """Takes apply number `kill_at` (counted from arming), then the process dies."""

    def __init__(self, store: DyingStore) -> None:
        super().__init__()
        self.store = store
        self.kill_at: int | None = None
        self.applies = 0

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool = False,
              **options: Any) -> cluster.Applied:
        applied = super().apply(obj, dry_run=dry_run, **options)
        if not dry_run and self.kill_at is not None:
            index, self.applies = self.applies, self.applies + 1
            if index == self.kill_at:
                self.store.dead = True
                raise Killed(f"killed after applying {applied.ref}")
        return applied


def config_map(name: str, *, intent_id: str, wave: int) -> str:
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"
            f"  namespace: sfo-ran\n  annotations:\n"
            f"    {contract.ANNOTATION_INTENT_ID}: {intent_id}\n"
            f"    {contract.ANNOTATION_WAVE}: \"{wave}\"\ndata:\n  n: \"{wave}\"\n")


class Env(sites.Env):
    store: DyingStore
    cluster: DyingCluster

    def __init__(self, tmp_path: Path, remote: gitrepo.GitRemote) -> None:
        super().__init__(tmp_path, remote, store_type=DyingStore)
        self.cluster = DyingCluster(self.store)
        self.tmp_path = tmp_path

    def restart(self) -> None:
        """A new process: a fresh store object over the same file, the cluster unchanged."""
        self.store = DyingStore(state_dir=self.tmp_path / "state", site=SITE)
        self.cluster.store = self.store
        self.cluster.kill_at = None

    def live(self, name: str) -> bool:
        return cluster.ObjectRef("v1", "ConfigMap", "sfo-ran", name) in self.cluster.objects


def land_intent_2(env: Env) -> None:
    """Intent 2: three new ConfigMaps in waves 0, 1 and 2, besides the sample's objects."""
    manifests = env.remote.work / "sites" / SITE / "manifests"
    gitrepo.restamp(env.remote, site=SITE, new_id="intent-2", sequence=2)
    for wave, name in enumerate(NEW):
        (manifests / f"40-{name}.yaml").write_text(
            config_map(name, intent_id="intent-2", wave=wave), encoding="utf-8")
    env.remote.commit_and_push("Intent 2: three more ConfigMaps")


def land_intent_3(env: Env) -> None:
    """Intent 3: intent 2's new ConfigMaps are gone again."""
    manifests = env.remote.work / "sites" / SITE / "manifests"
    for name in NEW:
        (manifests / f"40-{name}.yaml").unlink()
    gitrepo.restamp(env.remote, site=SITE, new_id="intent-3", sequence=3)
    env.remote.commit_and_push("Intent 3: without them")


def applies_of_intent_2(tmp_path: Path, remote: gitrepo.GitRemote) -> int:
    """How many applies a whole rollout of intent 2 makes (after intent 1 rolled out)."""
    env = Env(tmp_path / "count", remote)
    assert env.sync().ok
    land_intent_2(env)
    before = sum(1 for verb, _ in env.cluster.calls if verb == "apply")
    assert env.sync().ok
    after = sum(1 for verb, _ in env.cluster.calls if verb == "apply")
    gitrepo.git("reset", "--hard", "HEAD~1", cwd=remote.work)
    remote.push(force=True)
    return after - before


def test_objects_are_recorded_pending_before_their_first_apply(
        tmp_path: Path, remote: gitrepo.GitRemote) -> None:
    """Killed at intent 2's first apply, the record already holds all three new objects,
    pending (written ahead), under intent 2."""
    env = Env(tmp_path, remote)
    assert env.sync().ok
    land_intent_2(env)
    env.cluster.kill_at, env.cluster.applies = 0, 0
    with pytest.raises(Killed):
        env.sync()
    env.restart()
    entries = {e.name: e for e in env.store.load().inventory}
    for name in NEW:
        assert entries[name].pending, entries[name]
        assert entries[name].intent_id == "intent-2"
    assert not entries["sfo-site-config"].pending  # applied under intent 1, known applied
    assert [e.wave for e in (entries[n] for n in NEW)] == [0, 1, 2]


def test_an_applied_object_is_no_longer_pending(tmp_path: Path,
                                                remote: gitrepo.GitRemote) -> None:
    """After a rollout that ends, every object it applied is recorded applied, not
    pending, with its resourceVersion."""
    env = Env(tmp_path, remote)
    assert env.sync().ok
    land_intent_2(env)
    assert env.sync().ok
    for entry in env.store.load().inventory:
        assert not entry.pending, entry
        assert entry.resource_version is not None, entry


def test_no_object_of_a_superseded_intent_survives_a_kill_at_any_apply(
        tmp_path: Path, remote: gitrepo.GitRemote) -> None:
    """For a kill after each of intent 2's applies in turn, intent 3's successful rollout
    prunes every object intent 2 created that intent 3 does not want."""
    count = applies_of_intent_2(tmp_path, remote)
    assert count >= len(NEW)  # the sample's objects are re-applied with the new id too
    for kill_at in range(count):
        case = tmp_path / f"kill-{kill_at}"
        env = Env(case, remote)
        assert env.sync().ok
        land_intent_2(env)
        env.cluster.kill_at, env.cluster.applies = kill_at, 0
        with pytest.raises(Killed):
            env.sync()
        created = [name for name in NEW if env.live(name)]
        env.restart()
        land_intent_3(env)
        result = env.sync()
        assert result.ok, (kill_at, result.message)
        survivors = [name for name in NEW if env.live(name)]
        assert survivors == [], f"kill at apply {kill_at}: {created} created, left {survivors}"
        recorded = env.store.load()
        assert {e.name for e in recorded.inventory}.isdisjoint(NEW)
        assert all(not e.pending for e in recorded.inventory)
        # Back to intent 1's commit for the next case: the remote is shared.
        gitrepo.git("reset", "--hard", "HEAD~2", cwd=remote.work)
        remote.push(force=True)


def test_a_pending_entry_never_counts_as_run(tmp_path: Path, remote: gitrepo.GitRemote) -> None:
    """A Job-style skip reads only entries known applied: a pending entry of the same intent
    is not taken for a run object (else a killed first apply would never happen)."""
    entry = state.InventoryEntry(
        id="sfo-ran_x__ConfigMap", api_version="v1", kind="ConfigMap", namespace="sfo-ran",
        name="x", intent_id="intent-2", applied_at=state.now(), pending=True)
    from reconciler.site import inventory
    assert inventory.applied_under([entry], intent_id="intent-2") == frozenset()
    done = state.InventoryEntry(**{**entry.__dict__, "pending": False})
    assert inventory.applied_under([done], intent_id="intent-2") == {entry.id}
