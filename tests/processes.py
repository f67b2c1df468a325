"""What runs on this machine, read from /proc: descendants, liveness, secrets in arguments.

For the tests of git as a production client: no git outlives the reconciler, and no
secret shows in any process's command line or environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

PROC = Path("/proc")


def _pids() -> list[int]:
    return [int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()]


def _read(pid: int, name: str) -> bytes:
    try:
        return (PROC / str(pid) / name).read_bytes()
    except OSError:
        return b""


def parent_of(pid: int) -> int | None:
    stat = _read(pid, "stat").decode("utf-8", "replace")
    if not stat:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def command_line(pid: int) -> str:
    return _read(pid, "cmdline").replace(b"\0", b" ").decode("utf-8", "replace").strip()


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that does not reap it counts as gone)."""
    stat = _read(pid, "stat").decode("utf-8", "replace")
    return bool(stat) and stat.rpartition(")")[2].split()[0] != "Z"


def descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid`, with its command line."""
    children: dict[int, list[int]] = {}
    for child in _pids():
        parent = parent_of(child)
        if parent is not None:
            children.setdefault(parent, []).append(child)
    found: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if alive(child):
            found[child] = command_line(child)
        todo.extend(children.get(child, []))
    return found


def wait_for(predicate: object, *, timeout: float, what: str) -> None:
    """Poll `predicate()` every 50 ms until it is true, or fail naming `what`."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


@dataclasses.dataclass
class Scan:
    """What a background scan of every process's command line and environment saw."""

    leaks: list[str] = dataclasses.field(default_factory=list)  # where a secret showed
    git_commands: set[str] = dataclasses.field(default_factory=set)  # git processes seen
    rounds: int = 0


@contextlib.contextmanager
def scanning(*secrets: str) -> Iterator[Scan]:
    """Scan /proc/*/cmdline and /proc/*/environ for `secrets` over and over while the body
    runs; the Scan lists where any showed, and which git commands were seen running."""
    scan = Scan()
    stop = threading.Event()
    me = os.getpid()
    needles = [s.encode() for s in secrets]

    def loop() -> None:
        while not stop.is_set():
            for pid in _pids():
                if pid == me:
                    continue  # the test itself holds the secret in memory, never in these
                for name in ("cmdline", "environ"):
                    data = _read(pid, name)
                    if any(needle in data for needle in needles):
                        scan.leaks.append(f"/proc/{pid}/{name}: {command_line(pid)[:200]}")
                words = _read(pid, "cmdline").split(b"\0")
                if words and Path(words[0].decode("utf-8", "replace")).name.startswith("git"):
                    scan.git_commands.add(" ".join(w.decode("utf-8", "replace")
                                                   for w in words[:2]))
            scan.rounds += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield scan
    finally:
        stop.set()
        thread.join(timeout=10)
