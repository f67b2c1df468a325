"""What a reconcile pass reports as it goes: metrics, Events and probes listen. Called by
pipeline; implemented by site/metrics.py and site/events.py.

Each happening is a frozen dataclass; an observer is a plain callable taking one. The
pipeline tells them through `tell()`, which never lets an observer's error reach the pass:
what is reported must never change what is reconciled. An observer that does I/O (Events)
queues the happening and returns at once.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
from collections.abc import Callable, Iterable

from reconciler.site import fence, state

log = logging.getLogger("reconciler.site.observe")

# The site the current thread works for: the pipeline sets it on entry, and the JSON log
# formatter (cli) adds it to every line.
SITE: contextvars.ContextVar[str | None] = contextvars.ContextVar("reconciler_site",
                                                                 default=None)


@dataclasses.dataclass(frozen=True)
class PassStarted:
    """The front half began: a fetch is about to happen."""

    site: str


@dataclasses.dataclass(frozen=True)
class Fetched:
    """The branch was fetched; `commit` is its head."""

    site: str
    commit: str


@dataclasses.dataclass(frozen=True)
class FetchFailed:
    site: str
    error: str


@dataclasses.dataclass(frozen=True)
class Evaluated:
    """The front half ended (fetch, read, decide), whatever it decided."""

    site: str


@dataclasses.dataclass(frozen=True)
class Accepted:
    """A new intent was recorded as accepted; `previous` was in force before it."""

    site: str
    intent_id: str
    sequence: int | None
    commit: str
    previous: str | None


@dataclasses.dataclass(frozen=True)
class Refused:
    site: str
    intent_id: str
    commit: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Dropped:
    """The manifests this revision dropped (none: the drops are cleared)."""

    site: str
    intent_id: str
    drops: tuple[fence.Drop, ...]


@dataclasses.dataclass(frozen=True)
class WavesChanged:
    """A wave of the rollout changed phase (rollout.run's on_progress)."""

    site: str
    intent_id: str
    waves: tuple[state.WaveRecord, ...]


@dataclasses.dataclass(frozen=True)
class RolloutEnded:
    """The back half ended. `drift`: a pass over an intent already rolled out."""

    site: str
    intent_id: str
    commit: str
    outcome: state.Outcome
    message: str
    drift: bool
    superseded_by: str | None = None
    shutdown: bool = False  # stopped by SIGTERM: it resumes on the next start


@dataclasses.dataclass(frozen=True)
class PassEnded:
    """A pass ended: `result` is the record's (ok, failed, refused, aborted); `accepted`
    the intent in force after it, as recorded."""

    site: str
    result: str
    message: str
    stage: str | None = None
    accepted: fence.Accepted | None = None


Happening = (PassStarted | Fetched | FetchFailed | Evaluated | Accepted | Refused | Dropped
             | WavesChanged | RolloutEnded | PassEnded)
Observer = Callable[[Happening], None]


def ignore(_happening: Happening) -> None:
    """The observer of `sync` and of tests: nothing listens."""


def fanout(observers: Iterable[Observer]) -> Observer:
    """One observer that tells each of `observers` in turn."""
    every = tuple(observers)

    def tell_all(happening: Happening) -> None:
        for observer in every:
            tell(observer, happening)
    return tell_all


def tell(observer: Observer, happening: Happening) -> None:
    """Report `happening`; an observer's error is logged, never raised into the pass."""
    try:
        observer(happening)
    except Exception:
        log.exception("reporting %s failed", type(happening).__name__)
