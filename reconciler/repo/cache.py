"""Keep the local git cache usable: stale locks removed, a damaged cache re-created.
Called by source (`Source._repo()` and `Source._fetch()`).

A fetch killed half-way (SIGKILL, a full disk, a node going down) leaves git's lock files
behind (`refs/.../<branch>.lock`, `packed-refs.lock`, `shallow.lock`, `config.lock`,
`index.lock`), and every later fetch fails on them; a torn write can leave a `HEAD` that
is garbage, a truncated pack, or missing objects. The cache holds nothing that cannot be
fetched again: the history guard compares with the last head recorded in the site's
state, not with the cache, so re-creating the cache loses nothing.

Every git command of this process that writes a cache runs inside `held()`: an exclusive
lock on a file beside the cache (`<key>.git.guard`), taken by every thread and process
that fetches into it. Inside it no other git writes that cache, so a lock file found there
is stale by construction, whatever its age, and is removed (a warning names it).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("reconciler.repo.cache")

_HEAD = re.compile(r"(ref: refs/\S+|[0-9a-f]{40}|[0-9a-f]{64})\n?")
_VERIFY_TIMEOUT = 120.0  # seconds: fsck of a cache (connectivity only) is far quicker
_verified: set[Path] = set()  # caches fsck found sound since this process started
_verified_lock = threading.Lock()


def guard_path(path: Path) -> Path:
    """The file whose lock `held()` takes for the cache at `path`."""
    return path.parent / f"{path.name}.guard"


@contextlib.contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold the cache at `path` exclusively (threads and processes alike) while inside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(guard_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def problem(path: Path) -> str | None:
    """Why `path` is not a usable bare repository by its shape, without running git; None
    when it is one, or does not exist yet (the first fetch creates it)."""
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_dir():
        return "it is not a folder"
    head = path / "HEAD"
    if not head.is_file():
        return "it has no HEAD: not a git repository"
    try:
        text = head.read_bytes().decode("ascii", "replace")
    except OSError as exc:
        return f"its HEAD cannot be read ({exc.strerror or type(exc).__name__})"
    if not _HEAD.fullmatch(text):
        return "its HEAD is garbage"
    for folder in ("objects", "refs"):
        if not (path / folder).is_dir():
            return f"it has no {folder}/ folder"
    return None


def stale_locks(path: Path) -> list[Path]:
    """git's lock files in the cache at `path`: in its top folder, under refs/ and logs/,
    and in objects/info/ and objects/pack/ (never in the loose object folders)."""
    if not path.is_dir():
        return []
    found = [entry for entry in path.glob("*.lock") if entry.is_file()]
    for folder in ("refs", "logs"):
        found += [entry for entry in (path / folder).rglob("*.lock") if entry.is_file()]
    for folder in ("objects/info", "objects/pack"):
        found += [entry for entry in (path / folder).rglob("*.lock") if entry.is_file()]
    return sorted(found)


def remove_stale_locks(path: Path) -> list[Path]:
    """Remove every lock file `stale_locks()` finds; call inside `held()`. Returns them."""
    removed = []
    for lock in stale_locks(path):
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
            removed.append(lock)
            log.warning("removed the stale git lock %s (left by a git killed in the middle "
                        "of a write; nothing else writes this cache)", lock)
    return removed


def damage(path: Path) -> str | None:
    """What `git fsck --connectivity-only` finds wrong with the cache at `path` (a
    truncated pack, missing or corrupt objects, refs to nothing), in one line; None when
    it is sound or does not exist."""
    shape = problem(path)
    if shape is not None or not path.exists():
        return shape
    try:
        done = subprocess.run(
            ["git", "--git-dir", str(path), "fsck", "--connectivity-only", "--no-dangling",
             "--no-progress"], capture_output=True, timeout=_VERIFY_TIMEOUT, check=False,
            env={**os.environ, "LC_ALL": "C", "LANGUAGE": "C"}, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None  # slow is not damaged: the fetch says whether it works
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in done.stderr.decode("utf-8", "replace").splitlines()
             if line.strip().startswith(("error:", "fatal:", "missing", "broken"))]
    first = lines[0] if lines else f"git fsck exited with {done.returncode}"
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    return first + more


def recreate(path: Path, *, why: str) -> None:
    """Remove the cache at `path` (a fresh fetch fills it again); call inside `held()`."""
    log.warning("the git cache %s is damaged (%s): removing it; the next fetch re-creates "
                "it (the history guard uses the head recorded in the state, not the cache)",
                path, why)
    with _verified_lock:
        _verified.discard(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def prepare(path: Path) -> None:
    """Make the cache at `path` fit for a fetch; call inside `held()`. Removes stale
    locks; re-creates a cache that is not a repository, or, the first time this process
    fetches into it, one that fsck finds damaged."""
    shape = problem(path)
    if shape is not None:
        recreate(path, why=shape)
        return
    remove_stale_locks(path)
    with _verified_lock:
        if path in _verified or not path.exists():
            return
    found = damage(path)
    if found is not None:
        recreate(path, why=found)
        return
    with _verified_lock:
        _verified.add(path)


def forget(path: Path) -> None:
    """Have the next `prepare()` check the cache at `path` again (after a failed fetch)."""
    with _verified_lock:
        _verified.discard(path)
