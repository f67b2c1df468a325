"""The site state file: its JSON form, atomic saves, careful loads, and the site lock."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.repo import documents
from reconciler.site import fence, state

ROOT = Path(__file__).resolve().parents[2]
SHA_A = "a" * 40
SHA_B = "b" * 40
T0 = "2026-11-27T12:00:00.000000Z"
T1 = "2026-11-27T12:01:00.000000Z"
T2 = "2026-11-27T12:02:00.500000Z"
T3 = "2026-11-27T12:03:00.000000Z"

FULL = state.SiteState(
    site="edge-a",
    source=state.SourceRecord(url="https://***@git.example.com/fleet.git", branch="main"),
    last_fetched_head=SHA_B,
    accepted=fence.Accepted(id="intent-2", sequence=2, commit=SHA_B, accepted_at=T1),
    last_sync=state.SyncRecord(
        started_at=T2, commit=SHA_B, result="ok", finished_at=T3, verdict="accept",
        message="applied", created=1, configured=2, unchanged=3, dropped=1,
    ),
    rollout=state.RolloutRecord(
        intent_id="intent-2", commit=SHA_B, phase=state.Outcome.SUCCEEDED, started_at=T1,
        finished_at=T3, message="all waves healthy", superseded_by="intent-3",
        waves=(
            state.WaveRecord(wave=0, phase=state.WavePhase.HEALTHY,
                             objects=("Namespace/app",)),
            state.WaveRecord(wave=20, phase=state.WavePhase.FAILED,
                             objects=("ConfigMap/app/one", "Service/app/two")),
        ),
    ),
    history=(
        state.HistoryEntry(id="intent-1", sequence=1, commit=SHA_A,
                           outcome=state.Outcome.ABORTED, accepted_at=T0, finished_at=T1,
                           superseded_by="intent-2", message="superseded by intent-2"),
        state.HistoryEntry(id="intent-0", sequence=None, commit=SHA_B,
                           outcome=state.Outcome.REFUSED, message="stale sequence"),
        state.HistoryEntry(id="intent-2", sequence=2, commit=SHA_B,
                           outcome=state.Outcome.SUCCEEDED, accepted_at=T1, finished_at=T3),
    ),
    inventory=(
        state.InventoryEntry(id="_app__Namespace", api_version="v1", kind="Namespace",
                             namespace=None, name="app", intent_id="intent-2", applied_at=T2),
        state.InventoryEntry(id="app_one__ConfigMap", api_version="v1", kind="ConfigMap",
                             namespace="app", name="one", intent_id="intent-2",
                             applied_at=T2, resource_version="4711"),
        state.InventoryEntry(id="app_two__ConfigMap", api_version="v1", kind="ConfigMap",
                             namespace="app", name="two", intent_id="intent-2",
                             applied_at=T2, wave=1, pending=True),
    ),
    drops=(
        state.DropRecord(file="sites/edge-a/manifests/a.yaml", document=1, line=7,
                         object="ConfigMap/app/old", carried="intent-1",
                         reason="carries intent-1, not the accepted intent-2"),
    ),
    errors=(
        state.ErrorRecord(time=T0, stage="fetch", message="fetch failed"),
        state.ErrorRecord(time=T1, stage="apply", message="apply failed", commit=SHA_A),
    ),
    superseded=("intent-0", "intent-1"),
    suspended=state.Suspension(by="alice@ops-1", at=T1, reason="maintenance window"),
    degraded=state.Degraded(since=T1, stage="fetch", message="fetch of branch 'main' failed",
                            failures=3),
)


@pytest.fixture
def store(tmp_path: Path) -> state.FileStateStore:
    return state.FileStateStore(state_dir=tmp_path / "state", site="edge-a")


def write_raw(store: state.FileStateStore, data: object) -> bytes:
    """Put `data` (JSON-encoded unless bytes) in the store's file; return the bytes written."""
    payload = data if isinstance(data, bytes) else json.dumps(data).encode()
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_bytes(payload)
    return payload


# --- round trip and format --------------------------------------------------------------


def test_full_state_fixture_sets_every_field() -> None:
    """The round-trip fixture leaves no SiteState field at its default (so none goes untested)."""
    for field in dataclasses.fields(state.SiteState):
        if field.name == "format_version":
            continue
        default = field.default if field.default is not dataclasses.MISSING else None
        assert getattr(FULL, field.name) not in (default, None, ()), field.name


def test_saved_state_loads_back_equal(store: state.FileStateStore) -> None:
    """save() then load() gives back an equal SiteState, enums and tuples included."""
    store.save(FULL)
    loaded = state.FileStateStore(state_dir=store.state_dir, site="edge-a").load()
    assert loaded == FULL
    assert loaded.rollout is not None
    assert loaded.rollout.waves[1].phase is state.WavePhase.FAILED
    assert isinstance(loaded.history, tuple) and isinstance(loaded.rollout.waves[0].objects, tuple)


def test_state_file_is_json_with_format_version_and_camel_case_keys(
    store: state.FileStateStore,
) -> None:
    """The file is plain JSON: formatVersion 2, the site, camelCase keys, enum values."""
    store.save(FULL)
    data = json.loads(store.path.read_text(encoding="utf-8"))
    assert data["formatVersion"] == state.FORMAT_VERSION == 6
    assert data["site"] == "edge-a"
    assert data["lastFetchedHead"] == SHA_B
    assert data["accepted"] == {"id": "intent-2", "sequence": 2, "commit": SHA_B,
                                "acceptedAt": T1}
    assert data["rollout"]["waves"][0] == {"wave": 0, "phase": "healthy",
                                           "objects": ["Namespace/app"]}
    assert data["history"][0]["outcome"] == "Aborted"
    assert data["inventory"][1]["resourceVersion"] == "4711"


def test_save_replaces_the_previous_state(store: state.FileStateStore) -> None:
    """A second save wins over the first."""
    store.save(FULL)
    store.save(state.SiteState(site="edge-a", last_fetched_head=SHA_A))
    assert store.load() == state.SiteState(site="edge-a", last_fetched_head=SHA_A)


def test_save_leaves_no_temp_files(store: state.FileStateStore) -> None:
    """After saves, the state dir holds only the state file and its backup."""
    store.save(FULL)
    store.save(FULL)
    assert sorted(p.name for p in store.state_dir.iterdir()) == ["edge-a.json",
                                                                   "edge-a.json.bak"]


def test_invalid_state_is_not_written(store: state.FileStateStore) -> None:
    """A state breaking the schema is refused before the file is touched."""
    store.save(FULL)
    before = store.path.read_bytes()
    bad = dataclasses.replace(FULL, last_fetched_head="not-a-sha")
    with pytest.raises(errors.StateError,
                       match=r"refusing to write an invalid state: \$\.lastFetchedHead: "):
        store.save(bad)
    assert store.path.read_bytes() == before
    assert sorted(p.name for p in store.state_dir.iterdir()) == ["edge-a.json"]


# --- careful loads ----------------------------------------------------------------------


def test_missing_file_loads_as_an_empty_state(store: state.FileStateStore) -> None:
    """A site never synced has an empty state, and loading it creates nothing."""
    assert store.load() == state.SiteState(site="edge-a")
    assert not store.state_dir.exists()


def test_corrupt_file_is_refused_and_left_untouched(store: state.FileStateStore) -> None:
    """A file that is not JSON is a StateError, and its bytes stay exactly as they were."""
    payload = write_raw(store, b'{"formatVersion": 1, "site": "edge-a",\n  oops')
    with pytest.raises(errors.StateError) as caught:
        store.load()
    assert str(caught.value).startswith(f"{store.path}:2:3: corrupt state file (")
    assert "left untouched" in str(caught.value)
    assert store.path.read_bytes() == payload
    assert sorted(p.name for p in store.state_dir.iterdir()) == ["edge-a.json"]


def test_file_that_is_not_utf8_is_refused_as_corrupt(store: state.FileStateStore) -> None:
    """Garbage bytes (e.g. a disk fault) are a StateError like any corrupt file, left as is."""
    payload = write_raw(store, b'{"formatVersion": 1, "site": "edge-a"\x00\xff\xfe}')
    with pytest.raises(errors.StateError, match="corrupt state file"):
        store.load()
    assert store.path.read_bytes() == payload


def test_file_breaking_the_schema_is_refused_naming_the_json_path(
    store: state.FileStateStore,
) -> None:
    """Valid JSON that breaks the schema is a StateError naming the offending field's path."""
    data = state.to_json(FULL)
    data["history"][1]["outcome"] = "Exploded"
    payload = write_raw(store, data)
    with pytest.raises(errors.StateError) as caught:
        store.load()
    assert str(caught.value).startswith(f"{store.path}: corrupt state file: $.history[1].outcome: ")
    assert "'Exploded' is not one of" in str(caught.value)
    assert store.path.read_bytes() == payload


def test_json_that_is_not_an_object_is_refused(store: state.FileStateStore) -> None:
    """A JSON list is a StateError, not a crash."""
    write_raw(store, [1, 2])
    with pytest.raises(errors.StateError, match=r"corrupt state file: \$: \[1, 2\] is not of type"):
        store.load()


def test_newer_format_version_is_refused(store: state.FileStateStore) -> None:
    """A file written by a newer reconciler is refused, asking for an upgrade."""
    write_raw(store, {**state.to_json(FULL), "formatVersion": 7, "somethingNew": True})
    with pytest.raises(errors.StateError,
                       match=r"state format version 7 is newer than this reconciler's \(6\); "
                             r"upgrade the reconciler"):
        store.load()


def test_state_file_of_another_site_is_refused(store: state.FileStateStore) -> None:
    """A file that names another site is refused, naming both sites."""
    other = state.FileStateStore(state_dir=store.state_dir, site="edge-b")
    other.save(dataclasses.replace(FULL, site="edge-b"))
    store.path.write_bytes(other.path.read_bytes())
    with pytest.raises(errors.StateError,
                       match=r"state file belongs to site 'edge-b', not 'edge-a'$"):
        store.load()


# --- the lock ---------------------------------------------------------------------------


def test_second_lock_in_the_same_process_is_refused_naming_the_pid(
    store: state.FileStateStore,
) -> None:
    """A second store on the same site and dir cannot lock while the first holds it."""
    second = state.FileStateStore(state_dir=store.state_dir, site="edge-a")
    with store.lock(), pytest.raises(errors.StateLockedError) as caught, second.lock():
        pytest.fail("second lock was granted")
    message = str(caught.value)
    assert f"site 'edge-a' is locked by another reconciler (pid {os.getpid()})" in message
    assert str(store.lock_path) in message
    assert isinstance(caught.value, errors.StateError)


def test_lock_file_names_the_holder_while_held(store: state.FileStateStore) -> None:
    """The lock file holds the holder's pid while locked and is emptied on release."""
    with store.lock():
        assert store.lock_path.read_text() == f"{os.getpid()}\n"
    assert store.lock_path.read_text() == ""


def test_lock_is_released_when_the_context_exits(store: state.FileStateStore) -> None:
    """After the with-block, normally or by an exception, another store can lock."""
    second = state.FileStateStore(state_dir=store.state_dir, site="edge-a")
    with store.lock():
        pass
    with second.lock():
        pass
    with pytest.raises(RuntimeError, match="boom"), store.lock():
        raise RuntimeError("boom")
    with second.lock():
        pass


def test_different_sites_do_not_conflict(store: state.FileStateStore) -> None:
    """Two sites in one state dir lock independently."""
    other = state.FileStateStore(state_dir=store.state_dir, site="edge-b")
    with store.lock(), other.lock():
        assert store.lock_path != other.lock_path


@pytest.fixture
def lock_holder(store: state.FileStateStore) -> Iterator[subprocess.Popen[str]]:
    """Another Python process that holds edge-a's lock until its stdin closes."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from reconciler.site import state\n"
        "store = state.FileStateStore(state_dir=Path(sys.argv[1]), site='edge-a')\n"
        "with store.lock():\n"
        "    print('locked', flush=True)\n"
        "    sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(store.state_dir)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == "locked\n", child.stderr.read() if child.stderr else ""
        yield child
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(timeout=30)
        for stream in (child.stdout, child.stderr):
            if stream:
                stream.close()


def test_lock_held_by_another_process_is_refused_naming_its_pid(
    store: state.FileStateStore, lock_holder: subprocess.Popen[str]
) -> None:
    """While another process holds the site's lock, lock() fails at once naming that pid."""
    with pytest.raises(errors.StateLockedError, match=rf"\(pid {lock_holder.pid}\)"), \
            store.lock():
        pytest.fail("lock was granted while another process held it")
    assert lock_holder.stdin is not None
    lock_holder.stdin.close()
    assert lock_holder.wait(timeout=30) == 0
    with store.lock():  # released when the holder exits
        pass


# --- SiteState helpers ------------------------------------------------------------------


def entry(n: int, commit: str = SHA_A, **changes: object) -> state.HistoryEntry:
    base = state.HistoryEntry(id=f"intent-{n}", sequence=n, commit=commit,
                              outcome=state.Outcome.SUCCEEDED)
    return dataclasses.replace(base, **changes)


def test_with_history_replaces_the_entry_of_the_same_id_and_commit() -> None:
    """Re-recording an (id, commit) pair replaces the old entry and moves it last."""
    s = state.SiteState(site="edge-a")
    s = s.with_history(entry(1)).with_history(entry(2))
    s = s.with_history(entry(1, outcome=state.Outcome.FAILED))
    assert [(e.id, e.outcome) for e in s.history] == [
        ("intent-2", state.Outcome.SUCCEEDED), ("intent-1", state.Outcome.FAILED),
    ]


def test_with_history_keeps_the_same_id_at_another_commit() -> None:
    """The same intent id seen at two commits is two entries."""
    s = state.SiteState(site="edge-a").with_history(entry(1)).with_history(entry(1, SHA_B))
    assert [(e.id, e.commit) for e in s.history] == [("intent-1", SHA_A), ("intent-1", SHA_B)]


def test_with_history_keeps_only_the_newest_entries() -> None:
    """History is capped at HISTORY_LIMIT entries, dropping the oldest."""
    s = state.SiteState(site="edge-a")
    for n in range(state.HISTORY_LIMIT + 5):
        s = s.with_history(entry(n))
    assert len(s.history) == state.HISTORY_LIMIT == 50
    assert s.history[0].id == "intent-5"
    assert s.history[-1].id == f"intent-{state.HISTORY_LIMIT + 4}"


def test_with_error_keeps_only_the_newest_errors() -> None:
    """Errors are capped at ERRORS_LIMIT, dropping the oldest."""
    s = state.SiteState(site="edge-a")
    for n in range(state.ERRORS_LIMIT + 3):
        s = s.with_error(state.ErrorRecord(time=T0, stage="fetch", message=f"e{n}"))
    assert [e.message for e in s.errors] == [f"e{n}" for n in range(3, state.ERRORS_LIMIT + 3)]


def test_superseded_ids_are_the_intents_replaced_later() -> None:
    """superseded_ids() holds every history id with a superseded_by, and no other."""
    s = state.SiteState(site="edge-a", history=(
        entry(1, superseded_by="intent-2", outcome=state.Outcome.ABORTED),
        entry(2, superseded_by="intent-3"),
        entry(3),
        entry(4, outcome=state.Outcome.REFUSED),
    ))
    assert s.superseded_ids() == frozenset({"intent-1", "intent-2"})
    assert state.SiteState(site="edge-a").superseded_ids() == frozenset()


def test_update_history_changes_the_newest_accepted_entry_of_an_id() -> None:
    """update_history edits the newest non-refused entry of the id, leaving the rest."""
    s = state.SiteState(site="edge-a", history=(
        entry(1, SHA_A, outcome=state.Outcome.PROGRESSING),
        entry(1, SHA_B, outcome=state.Outcome.PROGRESSING),
        entry(1, SHA_B, outcome=state.Outcome.REFUSED, message="replay"),
    ))
    s = s.update_history("intent-1", outcome=state.Outcome.SUCCEEDED, finished_at=T3)
    assert [(e.commit, e.outcome, e.finished_at) for e in s.history] == [
        (SHA_A, state.Outcome.PROGRESSING, None),
        (SHA_B, state.Outcome.SUCCEEDED, T3),
        (SHA_B, state.Outcome.REFUSED, None),
    ]


# --- listing sites and times ------------------------------------------------------------


def test_sites_in_lists_the_sites_with_a_state_file(store: state.FileStateStore) -> None:
    """sites_in() names each `<site>.json`, sorted, ignoring locks, temp and other files."""
    store.save(state.SiteState(site="edge-a"))
    state.FileStateStore(state_dir=store.state_dir, site="edge-0.b").save(
        state.SiteState(site="edge-0.b"))
    with store.lock():
        pass
    for name in (".edge-a.json.123.tmp", "notes.txt", "Upper.json", "edge-c.json.bak"):
        (store.state_dir / name).write_text("x")
    assert state.sites_in(store.state_dir) == ["edge-0.b", "edge-a"]


def test_sites_in_a_missing_dir_is_empty(tmp_path: Path) -> None:
    """A state dir that does not exist yet has no sites."""
    assert state.sites_in(tmp_path / "nope") == []


def test_now_is_rfc3339_utc_and_parses_back() -> None:
    """now() is `YYYY-MM-DDTHH:MM:SS.ffffffZ`, and parse_time() reads it back in UTC."""
    text = state.now()
    assert len(text) == len(T0) and text.endswith("Z") and text[10] == "T"
    moment = state.parse_time(text)
    assert state.to_rfc3339(moment) == text
    assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0


def test_format_version_1_file_loads_and_is_saved_as_the_current_version(
        store: state.FileStateStore) -> None:
    """A version-1 file (inventory without waves) loads with wave 0, not pending, and saves
    as the current version."""
    store.state_dir.mkdir(parents=True, exist_ok=True)
    store.path.write_text(json.dumps({
        "formatVersion": 1, "site": "edge-a",
        "inventory": [{"id": "ns_cm__ConfigMap", "apiVersion": "v1", "kind": "ConfigMap",
                       "namespace": "ns", "name": "cm", "intentId": "a",
                       "appliedAt": "2026-11-27T12:00:00.000000Z"}],
    }))
    loaded = store.load()
    assert loaded.inventory[0].wave == 0 and not loaded.inventory[0].pending
    store.save(loaded)
    assert json.loads(store.path.read_text())["formatVersion"] == state.FORMAT_VERSION == 6


def test_format_version_2_file_loads_and_is_saved_as_the_current_version(
        store: state.FileStateStore) -> None:
    """A version-2 file loads as it was and is saved as version 6, its content unchanged
    but for `superseded`, which now keeps the ids its history shows replaced."""
    data = {k: v for k, v in state.to_json(FULL).items() if k != "superseded"}
    write_raw(store, {**data, "formatVersion": 2})
    store.save(store.load())
    replaced = [e["id"] for e in data["history"] if e.get("supersededBy")]
    assert replaced
    assert json.loads(store.path.read_text()) == {**data, "formatVersion": 6,
                                                   "superseded": replaced}


def test_superseded_ids_outlive_the_history_limit(store: state.FileStateStore) -> None:
    """An id replaced more than HISTORY_LIMIT intents ago is still refused: `superseded`
    keeps every replaced id, in the file, after the history has dropped its entry."""
    s = state.SiteState(site="edge-a")
    for n in range(state.HISTORY_LIMIT + 5):
        intent = documents.Intent(site="edge-a", id=f"i-{n}", sequence=None, description="",
                                  health_timeout=60.0, prune=True,
                                  location=documents.Location(file="intent.yaml", document=0))
        s = state.accept(s, intent=intent,
                         commit="a" * 40, drops=(), now=T0)
    assert all(e.id != "i-0" for e in s.history)
    store.save(s)
    assert "i-0" in store.load().superseded_ids()


def test_a_save_that_cannot_write_is_a_state_error_and_keeps_the_previous_file(
        store: state.FileStateStore) -> None:
    """A save whose write fails raises StateError naming the file and keeps the previous
    state intact (here the temporary file's name is taken by a folder)."""
    store.save(FULL)
    before = store.path.read_bytes()
    (store.state_dir / f".{store.site}.json.{os.getpid()}.tmp").mkdir()
    with pytest.raises(errors.StateError, match=r"cannot write the state .*previous state is "
                                                r"kept") as caught:
        store.save(dataclasses.replace(FULL, last_fetched_head=None))
    assert str(store.path) in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert store.path.read_bytes() == before


@pytest.mark.parametrize("site", ["../escape", "/etc/x", "Edge-A", "a/b", "", "-a", "a" * 64])
def test_a_site_name_that_is_not_a_dns_label_is_refused_before_it_becomes_a_path(
        tmp_path: Path, site: str) -> None:
    """A site name is checked by the one site-name rule before any path is built from it:
    nothing is created, and the error says what a site name may hold."""
    with pytest.raises(errors.UsageError, match=r"invalid site name .*lower-case letters"):
        state.FileStateStore(state_dir=tmp_path / "state", site=site)
    assert not (tmp_path / "state").exists()
