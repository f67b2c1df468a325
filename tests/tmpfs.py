"""A small real file system that tests can fill up or make read-only: a tmpfs.

For the tests of the state file's durability (tests/unit/test_state_durability.py and
tests/e2e/test_state_durability.py). Mounting needs root (or CAP_SYS_ADMIN); without it
the test is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

PAGE = 4096  # tmpfs counts its size in pages


@contextlib.contextmanager
def mounted(where: Path, *, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted on `where` (created), unmounted on the way out."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(where)], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        pytest.skip("no mount command: a small tmpfs is needed to fill a disk for real")
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs to fill a disk for real (needs root or "
                    f"CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True, check=True)


def read_only(where: Path, *, readonly: bool) -> None:
    """Remount the tmpfs on `where` read-only, or back to read-write."""
    mode = "ro" if readonly else "rw"
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], capture_output=True,
                   check=True)


def free(where: Path) -> int:
    """Bytes still free on the file system of `where`."""
    stats = os.statvfs(where)
    return stats.f_bavail * stats.f_frsize


def fill(where: Path, *, leave: int) -> Path:
    """Write `<where>/filler` so that only `leave` bytes stay free (a multiple of PAGE)."""
    filler = where / "filler"
    with contextlib.suppress(FileNotFoundError):
        filler.unlink()
    size = free(where) - leave
    assert size >= 0, f"only {free(where)} bytes free, cannot leave {leave}"
    with filler.open("wb") as out:
        out.write(b"\0" * size)
    assert free(where) == leave, f"{free(where)} bytes free, not {leave}"
    return filler
