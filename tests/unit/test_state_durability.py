"""The state file's durability: a save is complete or not at all, on a disk that fills up
or turns read-only, and the previous good record is kept as a backup `load()` recovers from.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.site import fence, state
from tests import tmpfs

SITE = "edge-a"
SHA_A = "a" * 40
SHA_B = "b" * 40
T0 = "2026-11-27T12:00:00.000000Z"


def realistic(generation: int, *, objects: int = 60) -> state.SiteState:
    """A record of a site a while into its life: a long history and inventory (~25 KiB)."""
    history = tuple(state.HistoryEntry(
        id=f"intent-{n}", sequence=n, commit=SHA_A, outcome=state.Outcome.ABORTED,
        accepted_at=T0, finished_at=T0, superseded_by=f"intent-{n + 1}",
        message=f"Aborted (superseded by intent-{n + 1})") for n in range(generation))
    inventory = tuple(state.InventoryEntry(
        id=f"app_object-{n}__ConfigMap", api_version="v1", kind="ConfigMap", namespace="app",
        name=f"object-{n}", intent_id=f"intent-{generation}", applied_at=T0,
        resource_version=str(1000 + n), wave=n % 3 * 10) for n in range(objects))
    return state.SiteState(
        site=SITE, last_fetched_head=SHA_B,
        accepted=fence.Accepted(id=f"intent-{generation}", sequence=generation, commit=SHA_B,
                                accepted_at=T0),
        history=history, inventory=inventory,
        superseded=tuple(f"intent-{n}" for n in range(generation)))


OLD = realistic(20)
NEW = realistic(21, objects=70)


def leftovers(store: state.FileStateStore) -> list[str]:
    """Names in the state directory other than the record, its backup and its lock."""
    kept = {store.path.name, store.backup_path.name, store.lock_path.name}
    return sorted(p.name for p in store.state_dir.iterdir() if p.name not in kept)


def check_kept(store: state.FileStateStore, before: bytes, caught: errors.StateError) -> None:
    """The failed save named the file, kept the previous record and left no temp file."""
    assert str(store.path) in str(caught)
    assert "the previous state is kept" in str(caught)
    assert isinstance(caught.__cause__, OSError)
    assert store.path.read_bytes() == before
    assert state.FileStateStore(state_dir=store.state_dir, site=SITE).load() == OLD
    assert leftovers(store) == []


# --- a real disk that fills up ----------------------------------------------------------


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 128 KiB tmpfs: room for a few copies of a realistic record, and easy to fill."""
    with tmpfs.mounted(tmp_path / "disk", size=128 * 1024) as where:
        yield where


def test_a_save_on_a_full_disk_fails_at_every_point_and_keeps_the_previous_file(
        disk: Path) -> None:
    """With room for none, one, ... of the pages the new record needs, the save is a
    StateError naming the file and ENOSPC, the previous record is intact and loads, no
    temporary file is left, and once space is freed the save succeeds."""
    store = state.FileStateStore(state_dir=disk / "state", site=SITE)
    store.save(OLD)
    before = store.path.read_bytes()
    size = len(state.encode(NEW, where=store.where))
    pages = -(-size // tmpfs.PAGE)
    assert pages >= 5, f"a realistic record is several pages, not {size} bytes"
    for room in range(pages):  # every page boundary the write can stop at
        filler = tmpfs.fill(disk, leave=room * tmpfs.PAGE)
        with pytest.raises(errors.StateError, match="No space left on device") as caught:
            store.save(NEW)
        check_kept(store, before, caught.value)
        filler.unlink()
    store.save(NEW)
    assert store.load() == NEW
    assert store.backup_path.read_bytes() == before
    assert leftovers(store) == []


def test_a_save_into_a_read_only_folder_is_a_clear_state_error(disk: Path) -> None:
    """A state directory remounted read-only gives a StateError naming the file and the
    cause, not a traceback; the previous record stays, and saves work again once it is
    writable."""
    store = state.FileStateStore(state_dir=disk / "state", site=SITE)
    store.save(OLD)
    before = store.path.read_bytes()
    tmpfs.read_only(disk, readonly=True)
    try:
        with pytest.raises(errors.StateError, match="Read-only file system") as caught:
            store.save(NEW)
        assert str(caught.value).startswith(f"{store.path}: cannot write the state (")
        assert store.path.read_bytes() == before
        assert store.load() == OLD
    finally:
        tmpfs.read_only(disk, readonly=False)
    store.save(NEW)
    assert store.load() == NEW


# --- every step of a save failing -------------------------------------------------------


def test_a_write_cut_short_at_any_byte_fails_the_save(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that runs out after any number of bytes (short writes, then ENOSPC) never
    leaves a truncated record: the save fails and the previous file is kept."""
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    store.save(OLD)
    before = store.path.read_bytes()
    size = len(state.encode(NEW, where=store.where))
    real_write = os.write
    for budget in sorted({0, 1, 2, 4095, 4096, size - 1, *range(0, size, 997)}):
        left = [budget]

        def write(fd: int, data: bytes | memoryview, left: list[int] = left) -> int:
            if left[0] == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written = real_write(fd, bytes(data[:min(left[0], 1000)]))  # short writes too
            left[0] -= written
            return written

        monkeypatch.setattr(os, "write", write)
        with pytest.raises(errors.StateError, match="No space left on device") as caught:
            store.save(NEW)
        monkeypatch.undo()
        check_kept(store, before, caught.value)
    store.save(NEW)
    assert store.load() == NEW


def _failing(name: str, real: Callable[..., object], *,
             when: Callable[..., bool]) -> Callable[..., object]:
    """`real`, failing with EIO whenever `when(*args)` holds."""
    def call(*args: object, **kwargs: object) -> object:
        if when(*args):
            raise OSError(errno.EIO, f"injected failure of os.{name}")
        return real(*args, **kwargs)
    return call


@pytest.mark.parametrize("step", ["open", "fsync", "fstat", "link", "replace-backup",
                                  "replace-record"])
def test_a_failure_at_any_step_before_the_rename_keeps_the_previous_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Whichever call of the save fails before the rename, the record and its backup are
    as they were and no temporary file is left."""
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    store.save(OLD)
    store.save(OLD)
    before = store.path.read_bytes()
    backup = store.backup_path.read_bytes()
    if step == "fstat":
        real_fstat = os.fstat
        monkeypatch.setattr(os, "fstat", lambda fd: _Stat(real_fstat(fd).st_size + 1))
    elif step.startswith("replace"):
        into = store.backup_path if step == "replace-backup" else store.path
        monkeypatch.setattr(os, "replace", _failing("replace", os.replace,
                                                    when=lambda src, dst: Path(dst) == into))
    else:
        monkeypatch.setattr(os, step, _failing(step, getattr(os, step),
                                               when=lambda *args: True))
    with pytest.raises(errors.StateError) as caught:
        store.save(NEW)
    monkeypatch.undo()
    check_kept(store, before, caught.value)
    assert store.backup_path.read_bytes() == backup


@dataclasses.dataclass(frozen=True)
class _Stat:
    st_size: int


def test_a_file_system_without_hard_links_gets_a_copied_backup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where hard links are not supported, the previous record is copied to the backup."""
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    store.save(OLD)
    before = store.path.read_bytes()

    def link(*args: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", link)
    store.save(NEW)
    assert store.backup_path.read_bytes() == before
    assert store.load() == NEW and leftovers(store) == []


# --- the backup, and recovering from it -------------------------------------------------


def test_the_backup_is_the_previous_good_record(tmp_path: Path) -> None:
    """After each save, `<site>.json.bak` holds the record the save replaced."""
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    store.save(OLD)
    assert not store.backup_path.exists()
    first = store.path.read_bytes()
    store.save(NEW)
    assert store.backup_path.read_bytes() == first
    second = store.path.read_bytes()
    store.save(OLD)
    assert store.backup_path.read_bytes() == second


@pytest.mark.parametrize("damage", [b'{"formatVersion": 5, "site": "edge-a",\n  oops',
                                    b"\xff\xfe\x00garbage", b"", b'{"site": "edge-a"}'])
def test_a_corrupt_record_is_recovered_from_the_backup_loudly(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: bytes) -> None:
    """A record that is not JSON, not UTF-8, empty (a truncated write) or against the
    schema loads from the backup, logged at ERROR and recorded among the state's errors."""
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    store.save(OLD)
    store.save(NEW)
    store.path.write_bytes(damage)
    fresh = state.FileStateStore(state_dir=store.state_dir, site=SITE)
    with caplog.at_level(logging.ERROR, logger="reconciler.site.state"):
        recovered = fresh.load()
    assert dataclasses.replace(recovered, errors=()) == OLD
    (error,) = recovered.errors
    assert error.stage == "state"
    assert f"recovered from the backup {store.backup_path}" in error.message
    assert str(store.path) in error.message and "corrupt state file" in error.message
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        error.message]
    assert store.path.read_bytes() == damage  # load() writes nothing


def test_a_lost_record_is_recovered_from_the_backup(tmp_path: Path) -> None:
    """A record deleted (or never renamed into place) loads from the backup, not as a new
    site: replay protection survives."""
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    store.save(OLD)
    store.save(NEW)
    store.path.unlink()
    assert store.exists()
    recovered = store.load()
    assert recovered.superseded_ids() == OLD.superseded_ids()
    assert f"{store.path} is missing" in recovered.errors[-1].message


def test_a_save_after_recovering_keeps_the_good_backup(tmp_path: Path) -> None:
    """The save after a recovery rewrites the record and does not make the corrupt file
    the backup: the good backup stays until a good record replaces it."""
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    store.save(OLD)
    store.save(NEW)
    good_backup = store.backup_path.read_bytes()
    store.path.write_bytes(b"{ truncated")
    fresh = state.FileStateStore(state_dir=store.state_dir, site=SITE)
    recovered = fresh.load()
    fresh.save(recovered)
    assert store.backup_path.read_bytes() == good_backup
    assert fresh.load() == recovered
    fresh.save(NEW)
    assert state.decode(store.backup_path.read_text(), where="bak", site=SITE) == recovered


def test_both_record_and_backup_corrupt_is_a_state_error_that_warns_against_deleting(
        tmp_path: Path) -> None:
    """When the backup is bad too, load() refuses naming both files, asks for a restore or
    an inspection, warns that deleting erases replay protection, and never suggests
    moving the record aside; both files stay as they were."""
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    store.state_dir.mkdir()
    store.path.write_bytes(b'{"formatVersion": 5,\n oops')
    store.backup_path.write_bytes(b"[1, 2]")
    with pytest.raises(errors.StateError) as caught:
        store.load()
    message = str(caught.value)
    assert message.startswith(f"{store.path}:2:2: corrupt state file (")
    assert f"its backup is corrupt too: {store.backup_path}: corrupt state file" in message
    assert "restore it from a backup" in message and "inspect" in message
    assert "do not delete it" in message and "replay protection" in message
    assert "accept an older intent" in message
    assert "aside" not in message and "afresh" not in message
    assert store.path.read_bytes() == b'{"formatVersion": 5,\n oops'
    assert store.backup_path.read_bytes() == b"[1, 2]"


def test_a_corrupt_record_without_backup_is_refused_naming_the_missing_backup(
        tmp_path: Path) -> None:
    """A corrupt record with no backup is never replaced by an empty state."""
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    store.state_dir.mkdir()
    store.path.write_bytes(b"")
    with pytest.raises(errors.StateError, match=rf"there is no backup {store.backup_path}; "
                                                "the state record of site 'edge-a' is "
                                                "corrupt.*replay protection"):
        store.load()


def test_a_lost_record_with_a_corrupt_backup_is_refused(tmp_path: Path) -> None:
    """No record and a corrupt backup is a StateError, not a new site."""
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    store.state_dir.mkdir()
    store.backup_path.write_bytes(b"{")
    with pytest.raises(errors.StateError, match=rf"{store.path} is missing; its backup is "
                                                "corrupt too"):
        store.load()


def test_a_newer_format_is_not_replaced_by_the_backup(tmp_path: Path) -> None:
    """A record of a newer format is not corrupt: it asks for an upgrade, and the older
    backup is not loaded in its place."""
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    store.save(OLD)
    store.save(OLD)
    store.path.write_text(
        f'{{"formatVersion": {state.FORMAT_VERSION + 1}, "site": "edge-a", '
        '"somethingNew": true}')
    with pytest.raises(errors.StateError, match="upgrade the reconciler"):
        store.load()


def test_no_message_for_a_corrupt_record_suggests_moving_it_aside() -> None:
    """The advice the store modules give never says to move the record aside or start
    afresh: that would erase replay protection."""
    root = Path(state.__file__).parent
    for module in ("state.py", "kubestate.py"):
        text = (root / module).read_text()
        assert "aside" not in text and "afresh" not in text, module


def test_a_killed_saves_temporary_files_are_removed_under_the_lock(tmp_path: Path) -> None:
    """The temporary files a save killed midway left behind (its record and backup ones)
    are removed once the site's lock is taken: no other process can be saving then. The
    record and its backup are untouched."""
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    store.save(OLD)
    store.save(OLD)
    left = [store.state_dir / f".{SITE}.json.999999.tmp",
            store.state_dir / f".{SITE}.json.bak.999999.tmp"]
    other_site = store.state_dir / ".edge-b.json.999999.tmp"
    for path in (*left, other_site):
        path.write_text("half a record")
    with store.lock():
        assert not any(path.exists() for path in left)
    assert other_site.exists()  # another site's: its own lock decides
    assert store.load() == OLD
    assert store.path.with_name(f"{SITE}.json.bak").exists()
