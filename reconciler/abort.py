"""The abort signal a rollout carries. Set by the watcher (new intent) or on shutdown.

Every wait in a rollout goes through `Abort.wait()`, so setting it ends the wait at once.
"""

from __future__ import annotations

import threading

from reconciler import errors


class Abort:
    """A one-shot signal with a reason: `superseded by <id>` or `shutdown`."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason = ""
        self._superseded_by: str | None = None

    def set(self, reason: str, *, superseded_by: str | None = None) -> None:
        """Signal the abort; the first reason wins."""
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

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True when aborted."""
        return self._event.wait(timeout)

    def check(self) -> None:
        """Raise AbortedError when the signal is set; call before each apply."""
        if self._event.is_set():
            raise errors.AbortedError(f"aborted ({self._reason})")
