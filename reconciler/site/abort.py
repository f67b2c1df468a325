"""The abort signal a rollout carries, and the gate its applies pass through.

Set by the watcher when a newer intent is accepted, or on shutdown. Every wait in a
rollout goes through `Abort.wait()`, so setting it ends the wait at once. Every apply runs
inside `Abort.gate()`: the watcher sets the signal, then `drain()`s the applies already in
flight, and only then records the new intent. So no request for the old intent reaches
the cluster after the new one is accepted.

A drain can wait as long as an apply's HTTP answer (the client's read timeout), so
`shut_down()` ends it at once. A drain cut short with applies still in flight withdraws
the supersession, in the same critical section that decides the drain's result: the
newer intent will not be recorded, so the rollout records itself as interrupted by
shutdown (to resume, and be superseded, on the next start), never as superseded by an
intent the state does not hold.
"""

from __future__ import annotations

import contextlib
import enum
import threading
from collections.abc import Iterator

from reconciler import errors


class Drain(enum.StrEnum):
    """How a `drain()` ended."""

    DRAINED = "drained"  # no apply left in flight: the newer intent may be recorded
    INTERRUPTED = "interrupted"  # shutdown came first, applies still in flight
    TIMED_OUT = "timed out"  # applies still in flight after the timeout


class Abort:
    """A one-shot signal with a reason: `superseded by <id>` or `shutdown`."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Condition()
        self._in_flight = 0
        self._reason = ""
        self._superseded_by: str | None = None
        self._shutting_down = False

    def set(self, reason: str, *, superseded_by: str | None = None) -> None:
        """Signal the abort; the first reason wins. No gate opens after this returns."""
        with self._lock:
            if not self._event.is_set():
                self._reason = reason
                self._superseded_by = superseded_by
                self._event.set()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def superseded_by(self) -> str | None:
        return self._superseded_by

    @property
    def shutdown(self) -> bool:
        """Stopped for shutdown, not superseded: the rollout resumes on the next start."""
        return self._event.is_set() and self._superseded_by is None

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True when aborted."""
        return self._event.wait(timeout)

    def check(self) -> None:
        """Raise AbortedError when the signal is set."""
        if self._event.is_set():
            raise errors.AbortedError(f"aborted ({self._reason})")

    @contextlib.contextmanager
    def gate(self) -> Iterator[None]:
        """Run one apply: refused once the signal is set, counted while in flight."""
        with self._lock:
            self.check()
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                self._lock.notify_all()

    def shut_down(self) -> None:
        """Shutdown: set the signal (an earlier reason still wins) and end a `drain()` at
        once. Never waits: the lock it takes is only held for bookkeeping."""
        self.set("shutdown")
        with self._lock:
            self._shutting_down = True
            self._lock.notify_all()

    def drain(self, timeout: float = 60.0) -> Drain:
        """After `set()`: wait until every apply in flight has its answer, `shut_down()` is
        called, or `timeout` passes.

        INTERRUPTED (shutdown with applies still in flight) also withdraws a supersession,
        decided under the lock that those applies take to leave the gate: the caller must
        not record the newer intent, and the rollout ends as a shutdown, not superseded.
        """
        with self._lock:
            self._lock.wait_for(lambda: self._in_flight == 0 or self._shutting_down, timeout)
            if self._in_flight == 0:
                return Drain.DRAINED
            if self._shutting_down:
                self._reason, self._superseded_by = "shutdown", None
                return Drain.INTERRUPTED
            return Drain.TIMED_OUT
