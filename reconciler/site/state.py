"""The durable record of one site: the state file format, its transitions, and its store.

Owned here alone. The pipeline changes the record only through the pure transitions below
(`accept`, `start_rollout`, `record_inventory`, `end_rollout`, `finish_sync`, ...), each
pinned by its own unit tests, and saves it through `FileStateStore`.

`<state-dir>/<site>.json` is written atomically (temp file read back, fsync, the previous
good record linked as `<site>.json.bak`, rename, fsync of the folder) or not at all, and
checked against `schemas/state.schema.json` on every load and save; `load()` recovers
from the backup when the file is lost or corrupt. An
exclusive lock on `<state-dir>/<site>.lock` keeps a second reconciler off the same site.
The format carries `formatVersion`; it never changes silently.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import enum
import errno
import fcntl
import hashlib
import json
import logging
import os
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from reconciler import cluster, contract, errors
from reconciler.repo import bundle, documents, schemas
from reconciler.site import fence, inventory

# 4: `superseded`, every id accepted and replaced, kept past the history's limit.
# 3: errors of the accept and prune stages, syncs that end aborted. 2: inventory entries
# carry their wave.
# 5: `suspended`, who suspended the site, when and why (`reconciler suspend`).
# 6: inventory entries can be `pending`: written ahead of their first apply; `degraded`,
# since when passes have failed in a row, and why the last one did.
# Versions 1 to 5 still load (the schema lists the versions read), and are saved as 6.
FORMAT_VERSION = 6
HISTORY_LIMIT = 50
ERRORS_LIMIT = 20

log = logging.getLogger(__name__)

# What a message about a corrupt record says to do: never to delete it, which would
# erase the site's replay protection.
KEEP_ADVICE = ("restore it from a backup of the state, or inspect and repair it; do not "
               "delete it: it holds the site's replay protection (the intents accepted "
               "and superseded), and without it the site would accept an older intent "
               "again")


def now() -> str:
    """The current time as RFC 3339 UTC with microseconds: `2026-11-27T12:00:00.123456Z`."""
    return to_rfc3339(datetime.datetime.now(datetime.UTC))


def to_rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def parse_time(text: str) -> datetime.datetime:
    """The inverse of `now()`, for comparisons and ages."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


class Outcome(enum.StrEnum):
    """How the rollout of one intent ended (or that it has not yet)."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ABORTED = "Aborted"
    REFUSED = "Refused"


class WavePhase(enum.StrEnum):
    PENDING = "pending"
    APPLYING = "applying"
    WAITING = "waiting"
    HEALTHY = "healthy"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    """One intent this site saw, and what became of it."""

    id: str
    sequence: int | None
    commit: str
    outcome: Outcome
    accepted_at: str | None = None  # None for a refused intent
    finished_at: str | None = None
    superseded_by: str | None = None
    message: str = ""


@dataclasses.dataclass(frozen=True)
class WaveRecord:
    wave: int
    phase: WavePhase
    objects: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RolloutRecord:
    """The rollout of the accepted intent, rebuilt from here after a restart."""

    intent_id: str
    commit: str
    phase: Outcome
    started_at: str
    finished_at: str | None = None
    message: str = ""
    superseded_by: str | None = None
    waves: tuple[WaveRecord, ...] = ()


@dataclasses.dataclass(frozen=True)
class InventoryEntry:
    """One object this reconciler applied for the site. `id` never changes format."""

    id: str  # <namespace>_<name>_<group>_<Kind>, as Flux writes it
    api_version: str
    kind: str
    namespace: str | None
    name: str
    intent_id: str
    applied_at: str
    resource_version: str | None = None
    wave: int = 0  # since format 2; prune goes in reverse wave order
    # Since format 6: recorded before its first apply (written ahead), not applied yet as
    # far as the record knows. A crash between the two leaves it known, so prunable.
    pending: bool = False


@dataclasses.dataclass(frozen=True)
class DropRecord:
    file: str
    document: int
    line: int | None
    object: str
    carried: str | None
    reason: str


@dataclasses.dataclass(frozen=True)
class ErrorRecord:
    time: str
    stage: str  # fetch, bundle, validate, fence, accept, apply, prune, state
    message: str
    commit: str | None = None


@dataclasses.dataclass(frozen=True)
class SyncRecord:
    """The last reconcile pass: when, on which commit, and how it went."""

    started_at: str
    commit: str | None
    result: str  # running, ok, failed, aborted (superseded or shut down), refused
    finished_at: str | None = None
    verdict: str | None = None
    message: str = ""
    created: int = 0
    configured: int = 0
    unchanged: int = 0
    dropped: int = 0
    pruned: int = 0


@dataclasses.dataclass(frozen=True)
class SourceRecord:
    url: str  # redacted
    branch: str


@dataclasses.dataclass(frozen=True)
class Degraded:
    """Passes have failed in a row since `since`: `failures` of them, the last one at
    `stage` with `message`. Cleared by the next pass that ends ok or refused."""

    since: str
    stage: str
    message: str
    failures: int = 1


@dataclasses.dataclass(frozen=True)
class Suspension:
    """A site suspended by `reconciler suspend`: nothing is applied until it is resumed."""

    by: str
    at: str
    reason: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class SiteState:
    """Everything the reconciler knows about one site."""

    format_version: int = FORMAT_VERSION
    site: str
    source: SourceRecord | None = None
    last_fetched_head: str | None = None
    accepted: fence.Accepted | None = None
    last_sync: SyncRecord | None = None
    rollout: RolloutRecord | None = None
    history: tuple[HistoryEntry, ...] = ()
    inventory: tuple[InventoryEntry, ...] = ()
    drops: tuple[DropRecord, ...] = ()
    errors: tuple[ErrorRecord, ...] = ()
    # Since format 4: the ids accepted and later replaced, never trimmed as the history is
    # (HISTORY_LIMIT), so a replay of one is refused however long ago it was replaced.
    superseded: tuple[str, ...] = ()
    # Since format 5: set while the site is suspended (site/control.py records it).
    suspended: Suspension | None = None
    # Since format 6: set while passes fail in a row (finish_sync), None after a good one.
    degraded: Degraded | None = None

    def superseded_ids(self) -> frozenset[str]:
        """Ids this site accepted and later replaced: a replay of one is refused."""
        return frozenset(self.superseded) | {e.id for e in self.history if e.superseded_by}

    def accepted_ids(self) -> frozenset[str]:
        """Every id this site ever accepted: the superseded ones, the history's accepted
        entries and the intent in force. None of them is accepted again (fence.decide)."""
        current = {self.accepted.id} if self.accepted else set()
        return (self.superseded_ids() | current
                | {e.id for e in self.history if e.outcome is not Outcome.REFUSED})

    def highest_sequence(self) -> int | None:
        """The highest sequence this site ever accepted, None when it never saw one.

        Derived from the record: since the fence refuses a lower or missing sequence once
        one was seen, the accepted intent holds the highest; the history's accepted
        entries cover a record written before that rule (an intent without a sequence
        accepted over one with)."""
        seen = [e.sequence for e in self.history
                if e.outcome is not Outcome.REFUSED and e.sequence is not None]
        if self.accepted is not None and self.accepted.sequence is not None:
            seen.append(self.accepted.sequence)
        return max(seen, default=None)

    def with_error(self, error: ErrorRecord) -> SiteState:
        return dataclasses.replace(self, errors=(*self.errors, error)[-ERRORS_LIMIT:])

    def with_history(self, entry: HistoryEntry) -> SiteState:
        """Add `entry`, or replace the entry of the same id and commit."""
        kept = tuple(e for e in self.history if (e.id, e.commit) != (entry.id, entry.commit))
        return dataclasses.replace(self, history=(*kept, entry)[-HISTORY_LIMIT:])

    def history_entry(self, intent_id: str) -> HistoryEntry | None:
        """The newest entry of `intent_id` that was accepted (not refused)."""
        return next((e for e in reversed(self.history)
                     if e.id == intent_id and e.outcome is not Outcome.REFUSED), None)

    def update_history(self, intent_id: str, **changes: Any) -> SiteState:
        """Change the newest history entry of `intent_id`."""
        history = list(self.history)
        for index in range(len(history) - 1, -1, -1):
            if history[index].id == intent_id and history[index].outcome != Outcome.REFUSED:
                history[index] = dataclasses.replace(history[index], **changes)
                break
        return dataclasses.replace(self, history=tuple(history))


# --- transitions: SiteState -> SiteState, pure -------------------------------------------
#
# The pipeline computes every value first and hands these to SiteBox.update(), which
# applies one to the record as it is *now* (the watcher may have accepted a newer intent
# meanwhile) and saves the result. None of them does I/O; `now` is passed in.

_OPEN = (Outcome.PENDING, Outcome.PROGRESSING)


@dataclasses.dataclass(frozen=True)
class Opened:
    """Which rollout record a pass writes to: the one it opened (or, for a drift pass, the
    one it found), named by intent, commit and start time."""

    intent_id: str
    commit: str
    started_at: str

    @classmethod
    def of(cls, record: RolloutRecord) -> Opened:
        return cls(intent_id=record.intent_id, commit=record.commit,
                   started_at=record.started_at)


def _is(record: RolloutRecord | None, opened: Opened) -> bool:
    return record is not None and Opened.of(record) == opened


def start_sync(current: SiteState, *, source: SourceRecord, now: str) -> SiteState:
    """A pass begins: `running` until one of the endings below records how it went."""
    return dataclasses.replace(current, source=source,
                               last_sync=SyncRecord(started_at=now, commit=None, result="running"))


def record_fetch(current: SiteState, *, head: str) -> SiteState:
    """The head fetched: the next fetch's history guard compares against it."""
    return dataclasses.replace(current, last_fetched_head=head)


def drop_records(drops: Iterable[fence.Drop]) -> tuple[DropRecord, ...]:
    """The fence's drops as the state file keeps them."""
    return tuple(DropRecord(file=d.location.file, document=d.location.document,
                            line=d.location.line, object=d.object, carried=d.carried,
                            reason=d.reason) for d in drops)


def refuse(current: SiteState, *, intent: documents.Intent, commit: str, reason: str,
           now: str) -> SiteState:
    """A refused intent enters the history; the accepted one stays in force.

    An intent refused at the very commit it was once accepted at (history rewound) keeps
    its accepted entry: replacing it would forget that the id was superseded.
    """
    if any(e.id == intent.id and e.commit == commit and e.outcome is not Outcome.REFUSED
           for e in current.history):
        return current
    return current.with_history(HistoryEntry(
        id=intent.id, sequence=intent.sequence, commit=commit, outcome=Outcome.REFUSED,
        finished_at=now, message=reason))


def accept(current: SiteState, *, intent: documents.Intent, commit: str,
           drops: tuple[DropRecord, ...], now: str) -> SiteState:
    """`intent` accepted, and the previous one closed as superseded.

    A previous intent still open (rolling out, or accepted and superseded before its
    rollout began: two intents in quick succession) ends `Aborted (superseded by <id>)`.
    """
    old = current.accepted
    if old is not None:
        running = (current.rollout is not None and current.rollout.intent_id == old.id
                   and current.rollout.phase in _OPEN)
        entry = current.history_entry(old.id)
        message = f"Aborted (superseded by {intent.id})"
        changes: dict[str, Any] = {"superseded_by": intent.id}
        if running or (entry is not None and entry.outcome in _OPEN):
            changes.update(outcome=Outcome.ABORTED, finished_at=now, message=message)
        current = current.update_history(old.id, **changes)
        if old.id not in current.superseded:
            current = dataclasses.replace(current, superseded=(*current.superseded, old.id))
        if running and current.rollout is not None:
            current = dataclasses.replace(current, rollout=dataclasses.replace(
                current.rollout, phase=Outcome.ABORTED, finished_at=now,
                superseded_by=intent.id, message=message))
    accepted = fence.Accepted(id=intent.id, sequence=intent.sequence, commit=commit,
                              accepted_at=now)
    current = dataclasses.replace(current, accepted=accepted, drops=drops)
    return current.with_history(HistoryEntry(
        id=intent.id, sequence=intent.sequence, commit=commit, outcome=Outcome.PENDING,
        accepted_at=now))


def suspend(current: SiteState, *, suspension: Suspension | None) -> SiteState:
    """The site suspended (or, with None, resumed): only the `suspended` field changes."""
    return dataclasses.replace(current, suspended=suspension)


def keep(current: SiteState, *, drops: tuple[DropRecord, ...]) -> SiteState:
    """The accepted intent again: only the drops of this revision change."""
    return dataclasses.replace(current, drops=drops)


def start_rollout(current: SiteState, *, intent_id: str, commit: str,
                  waves: tuple[WaveRecord, ...], now: str) -> SiteState:
    """The rollout of the accepted intent begins, every wave pending.

    Nothing changes when `intent_id` is no longer the accepted intent: a plan taken just
    before a newer acceptance must not reopen the record that acceptance closed.
    """
    if current.accepted is None or current.accepted.id != intent_id:
        return current
    return dataclasses.replace(current, rollout=RolloutRecord(
        intent_id=intent_id, commit=commit, phase=Outcome.PROGRESSING, started_at=now,
        waves=waves)).update_history(intent_id, outcome=Outcome.PROGRESSING)


def record_waves(current: SiteState, *, rollout: Opened,
                 waves: tuple[WaveRecord, ...]) -> SiteState:
    """Progress of the rollout `rollout` names; nothing when the record is another's (a
    newer intent was accepted meanwhile) or was closed by a newer acceptance."""
    if not _is(current.rollout, rollout) or current.rollout is None:
        return current
    return dataclasses.replace(current, rollout=dataclasses.replace(current.rollout,
                                                                    waves=waves))


def record_pending(current: SiteState, *, intent_id: str,
                   objects: Sequence[tuple[cluster.ObjectRef, int]], now: str) -> SiteState:
    """The objects a rollout of `intent_id` is about to apply, (ref, wave) each, written
    ahead: any not in the inventory yet goes in as pending, before its first apply, so a
    crash between the apply and the end of the rollout never leaves an object the site
    does not know (and would never prune). Entries already there stay as they are."""
    known = {entry.id for entry in current.inventory}
    added = [InventoryEntry(
        id=ref.inventory_id, api_version=ref.api_version, kind=ref.kind,
        namespace=ref.namespace, name=ref.name, intent_id=intent_id, applied_at=now,
        wave=wave, pending=True)
        for ref, wave in objects if ref.inventory_id not in known]
    if not added:
        return current
    return dataclasses.replace(current, inventory=inventory.merge(
        current.inventory, added=added, deleted=()))


def record_inventory(current: SiteState, *, results: Sequence[inventory.ObjectResult],
                     keep_only: frozenset[str] | None, now: str) -> SiteState:
    """The inventory after a step: what it applied put in, what it deleted taken out.

    After a successful rollout and prune, `keep_only` (the applied and held ids) is all
    that stays.
    """
    added = [InventoryEntry(
        id=r.ref.inventory_id, api_version=r.ref.api_version, kind=r.ref.kind,
        namespace=r.ref.namespace, name=r.ref.name, intent_id=r.intent_id, applied_at=now,
        resource_version=r.resource_version, wave=r.wave)
        for r in results if r.intent_id is not None and r.change is not cluster.Change.DELETED]
    deleted = {r.ref.inventory_id for r in results if r.change is cluster.Change.DELETED}
    return dataclasses.replace(current, inventory=inventory.merge(
        current.inventory, added=added, deleted=deleted, keep_only=keep_only))


def end_rollout(current: SiteState, *, rollout: Opened, phase: Outcome, message: str,
                waves: tuple[WaveRecord, ...], superseded_by: str | None,
                now: str) -> SiteState:
    """The rollout `rollout` names ended (or stopped for shutdown: `phase` Progressing).

    Its record and its history entry get the same phase. A record that is no longer this
    rollout's is left alone, and one a newer acceptance already closed (`accept()` marks
    it superseded) only gets its waves brought up to date. A rollout aborted for an intent
    whose acceptance is not recorded (yet: the acceptance is saved after the drain, and
    may fail) stays open, interrupted: the acceptance closes it, or the next pass resumes.
    """
    record = current.rollout
    if record is None or not _is(record, rollout):
        return current
    if record.superseded_by is not None:
        return dataclasses.replace(current, rollout=dataclasses.replace(record, waves=waves))
    if superseded_by is not None and (current.accepted is None
                                      or current.accepted.id != superseded_by):
        phase, superseded_by = Outcome.PROGRESSING, None
        message = "interrupted: a newer intent was being accepted; resumes unless it is"
    elif superseded_by is not None:
        message = f"Aborted (superseded by {superseded_by})"
    finished = None if phase is Outcome.PROGRESSING else now
    current = dataclasses.replace(current, rollout=dataclasses.replace(
        record, phase=phase, message=message, waves=waves, finished_at=finished,
        superseded_by=superseded_by))
    if superseded_by:
        return current  # accept() closed its history entry
    return current.update_history(record.intent_id, outcome=phase, message=message,
                                  finished_at=finished)


def record_error(current: SiteState, *, stage: str, message: str, commit: str | None,
                 now: str) -> SiteState:
    """An error of one pass, kept among the last few."""
    return current.with_error(ErrorRecord(time=now, stage=stage, message=message,
                                          commit=commit))


def finish_sync(current: SiteState, *, commit: str | None, result: str, message: str,
                verdict: str | None, now: str, changes: Iterable[cluster.Change] = (),
                dropped: int = 0, intent_id: str | None = None) -> SiteState:
    """The pass ended `ok`, `failed`, `aborted` or `refused`; `changes` are what it did to
    objects. A pass that rolled out `intent_id` is not `ok` when a newer intent was
    accepted before it ended: it was aborted, whatever its rollout said."""
    accepted = current.accepted.id if current.accepted else None
    if result == "ok" and intent_id is not None and accepted != intent_id:
        result, message = "aborted", (f"intent {intent_id} was superseded by {accepted} "
                                      "before the pass ended")
    record = current.last_sync or SyncRecord(started_at=now, commit=commit, result="running")
    counts = collections.Counter(changes)
    return dataclasses.replace(current, degraded=degrade(
        current.degraded, result=result, message=message, started_at=record.started_at,
        errors=current.errors), last_sync=dataclasses.replace(
        record, finished_at=now, commit=commit, result=result, message=message,
        verdict=verdict, created=counts[cluster.Change.CREATED],
        configured=counts[cluster.Change.CONFIGURED],
        unchanged=counts[cluster.Change.UNCHANGED], pruned=counts[cluster.Change.DELETED],
        dropped=dropped))


def degrade(previous: Degraded | None, *, result: str, message: str, started_at: str,
            errors: Sequence[ErrorRecord]) -> Degraded | None:
    """The Degraded record after a pass that ended `result`: one more failure (since the
    first failed pass of the run began; the stage is the last error's, which the pass
    recorded with the same message), cleared by `ok` or `refused` (the site works: the
    intent at the head was decided), kept as it is by `aborted` (says nothing)."""
    if result in ("ok", "refused"):
        return None
    if result != "failed":
        return previous
    last = errors[-1] if errors else None
    stage = last.stage if last is not None and last.message == message else "sync"
    if previous is None:
        return Degraded(since=started_at, stage=stage, message=message)
    return Degraded(since=previous.since, stage=stage, message=message,
                    failures=previous.failures + 1)


def killed_while_writing(current: SiteState) -> str | None:
    """The intent in force when the last pass ended without a record (its sync is still
    `running`: the process was killed, at any point after its start), if there was one:
    that pass could have been writing for it, a rollout or a drift pass. None otherwise.
    Only a process's first pass may ask: later, `running` is its own other thread's."""
    sync = current.last_sync
    if sync is not None and sync.result == "running" and current.accepted is not None:
        return current.accepted.id
    return None


def failing(current: SiteState) -> str | None:
    """Why `reconciler status` exits 1: the last sync failed or was refused, or the last
    rollout failed; None when the site is fine (a rollout in progress, or one aborted
    because a newer intent superseded it, is not a failure)."""
    sync, rollout = current.last_sync, current.rollout
    if sync is not None and sync.result in ("failed", "refused"):
        return f"last sync {sync.result}" + (f": {sync.message}" if sync.message else "")
    if rollout is not None and rollout.phase is Outcome.FAILED:
        return (f"rollout of {rollout.intent_id} failed"
                + (f": {rollout.message}" if rollout.message else ""))
    return None


def problems(current: SiteState) -> list[str]:
    """Where the record contradicts itself; empty when the last sync, the rollout record
    and the history agree. Checked by the tests after every injected failure."""
    found: list[str] = []
    accepted, rollout, sync = current.accepted, current.rollout, current.last_sync
    latest = next((e for e in reversed(current.history) if e.outcome is not Outcome.REFUSED),
                  None)
    if accepted is not None and (latest is None or latest.id != accepted.id):
        found.append(f"accepted intent {accepted.id!r} is not the newest in the history")
    if rollout is not None:
        entry = current.history_entry(rollout.intent_id)
        if entry is None:
            found.append(f"rollout of {rollout.intent_id!r} has no history entry")
        elif entry.outcome is not rollout.phase:
            found.append(f"rollout of {rollout.intent_id!r} is {rollout.phase.value} but its "
                         f"history entry says {entry.outcome.value}")
        if accepted is not None and rollout.intent_id != accepted.id:
            # The record is of an earlier intent: either superseded while it ran, or
            # finished before the accepted one, whose rollout has not begun.
            pending = current.history_entry(accepted.id)
            if rollout.superseded_by is None and rollout.phase in _OPEN:
                found.append(f"rollout of {rollout.intent_id!r} is still open but "
                             f"{accepted.id!r} is accepted")
            if pending is not None and pending.outcome is not Outcome.PENDING:
                found.append(f"intent {accepted.id!r} is {pending.outcome.value} but the "
                             f"rollout record is of {rollout.intent_id!r}")
    if sync is not None and sync.result == "ok":
        if accepted is None:
            found.append("last sync ok with no accepted intent")
        elif rollout is None or rollout.intent_id != accepted.id:
            found.append(f"last sync ok but no rollout of the accepted {accepted.id!r} is "
                         "recorded")
        elif rollout.phase is not Outcome.SUCCEEDED:
            found.append(f"last sync ok but the rollout of {accepted.id!r} is "
                         f"{rollout.phase.value}")
    if sync is not None and sync.result == "failed":
        rollout_failed = rollout is not None and rollout.phase is not Outcome.SUCCEEDED
        error_recorded = any(e.commit == sync.commit and e.message == sync.message
                             for e in current.errors)
        if not (rollout_failed or error_recorded):
            found.append(f"last sync failed ({sync.message}) but neither the rollout nor "
                         "the errors say so")
    return found


# --- JSON form -------------------------------------------------------------------------

def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def to_json(value: Any) -> Any:
    """A state value as plain JSON data, with camelCase keys."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_camel(f.name): to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [to_json(item) for item in value]
    return value


def from_json(cls: type[Any], data: Any) -> Any:
    """The inverse of `to_json()` for the type `cls`."""
    origin = typing.get_origin(cls)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        (inner,) = [arg for arg in typing.get_args(cls) if arg is not type(None)]
        return from_json(inner, data)
    if origin is tuple:
        (inner, _) = typing.get_args(cls)
        return tuple(from_json(inner, item) for item in data)
    if isinstance(cls, type) and issubclass(cls, enum.Enum):
        return cls(data)
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        kwargs = {
            f.name: from_json(hints[f.name], data[_camel(f.name)])
            for f in dataclasses.fields(cls)
            if _camel(f.name) in data
        }
        return cls(**kwargs)
    return data


# --- the store -------------------------------------------------------------------------

class StateStore(typing.Protocol):
    """Where one site's record lives: a file (FileStateStore) or a Kubernetes object
    (kubestate.KubeStateStore). Both keep the same JSON (`encode()`, `decode()`) and pass
    the same contract tests (tests/unit/test_state_stores.py)."""

    site: str

    @property
    def where(self) -> str:
        """The record's place, for messages: a path, or `ConfigMap/<ns>/<name>`."""
        ...

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Keep other reconcilers off the site while held; StateLockedError when one is on."""
        ...

    def exists(self) -> bool:
        """True when a record is stored (even one that would not load)."""
        ...

    def load(self) -> SiteState:
        """The recorded state, or an empty one for a site never synced; StateError when
        the record is corrupt or of a newer format."""
        ...

    def save(self, state: SiteState) -> None:
        """Store `state` durably, or raise StateError and keep the previous record."""
        ...


def encode(state: SiteState, *, where: str) -> bytes:
    """The record as the stores keep it: schema-checked JSON, indented, one final newline."""
    data = to_json(state)
    _check(data, where=where, what="refusing to write an invalid state")
    return json.dumps(data, indent=2, sort_keys=False).encode() + b"\n"


def decode(text: str, *, where: str, site: str) -> SiteState:
    """A record read back. Not JSON, against the schema, of a newer format or of another
    site: StateError, naming `where`; the record is left as it is for a person to look at.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.StateError(
            f"{documents.position(where, exc.lineno, exc.colno)}: corrupt state file "
            f"({exc.msg}); it was left untouched: {KEEP_ADVICE}"
        ) from exc
    version = data.get("formatVersion") if isinstance(data, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise errors.StateError(
            f"{where}: state format version {version} is newer than this "
            f"reconciler's ({FORMAT_VERSION}); upgrade the reconciler"
        )
    _check(data, where=where, what="corrupt state file")
    if data["site"] != site:
        raise errors.StateError(
            f"{where}: state file belongs to site {data['site']!r}, not {site!r}"
        )
    state: SiteState = from_json(SiteState, data)
    # An older format loads with the new fields' defaults and is saved as the new one; the
    # ids its history shows superseded are kept from now on, whatever the history drops.
    kept = tuple(dict.fromkeys((*state.superseded,
                                *(e.id for e in state.history if e.superseded_by))))
    return dataclasses.replace(state, format_version=FORMAT_VERSION, superseded=kept)


def _check(data: Any, *, where: str, what: str) -> None:
    problems = schemas.schema_errors(
        data, schema=schemas.STATE_SCHEMA,
        location=documents.Location(file=where, document=0),
    )
    if problems:
        detail = "; ".join(p.short() for p in problems[:5])
        raise errors.StateError(f"{where}: {what}: {detail}")


class _CorruptState(errors.StateError):
    """A record that does not read back: not UTF-8, not JSON, or against the schema (a
    newer format or another site's file is not corrupt: no backup stands in for it)."""


class FileStateStore:
    """One site's state as a JSON file in a state directory, and the previous good record
    as `<site>.json.bak`, which `load()` recovers from when the file is lost or corrupt."""

    def __init__(self, *, state_dir: Path, site: str) -> None:
        bundle.check_site_name(site)  # before the name becomes a path
        self.state_dir = state_dir
        self.site = site
        self.path = state_dir / f"{site}.json"
        self.backup_path = state_dir / f"{site}.json.bak"
        self.lock_path = state_dir / f"{site}.lock"
        # The digest of the bytes this store last read or wrote as a good `path`: a save
        # keeps such a file as the backup without parsing it again.
        self._good: bytes | None = None

    @property
    def where(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.exists() or self.backup_path.exists()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the site's exclusive lock; refuse at once when another process holds it.

        The holder's pid is written for the messages only: a full disk that has no room for
        it does not stop the pass here (its save then fails, saying why).
        """
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise errors.StateError(
                f"{self.lock_path}: cannot open the site's lock file ({exc.strerror or exc}); "
                "the state directory must be writable") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                raise errors.StateLockedError(
                    f"site {self.site!r} is locked by another reconciler (pid {holder}) "
                    f"holding {self.lock_path}; only one reconciler may run per site and "
                    "state directory"
                ) from exc
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError as exc:
                log.warning("%s: cannot record this process's pid (%s); the lock is held",
                            self.lock_path, exc.strerror or exc)
            self._remove_stale_temporaries()
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _remove_stale_temporaries(self) -> None:
        """Remove the temporary files of saves a killed process left (`.<site>.json.<pid>.tmp`
        and the backup's): with the site's lock held, no other process is saving, so any
        but this process's own is stale. A file that cannot be removed is only logged."""
        mine = f".{os.getpid()}.tmp"
        for pattern in (f".{self.site}.json.*.tmp", f".{self.site}.json.bak.*.tmp"):
            for path in self.state_dir.glob(pattern):
                if path.name.endswith(mine):
                    continue
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    log.warning("%s: cannot remove a killed save's temporary file (%s)",
                                path, exc.strerror or exc)
                    continue
                log.warning("%s: removed the temporary file of a save that did not end "
                            "(its process was killed)", path)

    def load(self) -> SiteState:
        """The recorded state, or an empty one for a site never synced.

        A file that is lost, not JSON or against the schema is recovered from the backup
        `<site>.json.bak`, logged at ERROR and recorded among the state's errors. When the
        backup is bad too, or the file has a newer format or names another site: a
        StateError, and both files are left as they are for a person to look at.
        """
        try:
            found = self._read(self.path)
        except _CorruptState as exc:
            problem = str(exc)
        else:
            if found is not None:
                loaded, self._good = found
                return loaded
            problem = f"{self.path} is missing"
        try:
            backup = self._read(self.backup_path)
        except _CorruptState as exc:
            backup_problem = f"its backup is corrupt too: {exc}"
        else:
            if backup is not None:
                return self._recovered(backup[0], problem=problem)
            if not self.path.exists():
                return SiteState(site=self.site)  # never synced: neither file exists
            backup_problem = f"there is no backup {self.backup_path}"
        raise errors.StateError(
            f"{problem}; {backup_problem}; the state record of site {self.site!r} is "
            f"corrupt, and {self.path} and {self.backup_path} were left untouched: "
            f"{KEEP_ADVICE}")

    def _recovered(self, backup: SiteState, *, problem: str) -> SiteState:
        """The backup in force, loudly: it may lack the last save before the loss."""
        message = (f"{problem}; the state was recovered from the backup {self.backup_path}, "
                   "which may lack the last save before the loss (check the last sync and "
                   f"the inventory); the next save rewrites {self.path}")
        log.error("%s", message)
        return record_error(backup, stage="state", message=message, commit=None, now=now())

    def _read(self, path: Path) -> tuple[SiteState, bytes] | None:
        """The record in `path` and the digest of its bytes; None when there is no file.
        _CorruptState when it is not UTF-8, not JSON or against the schema."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise errors.StateError(f"{path}: cannot read the state file: {exc}") from exc
        try:
            text = raw.decode("utf-8")
            data = json.loads(text)
        except UnicodeDecodeError as exc:
            raise _CorruptState(
                f"{path}: corrupt state file (not UTF-8 at byte {exc.start})") from exc
        except json.JSONDecodeError as exc:
            raise _CorruptState(f"{documents.position(str(path), exc.lineno, exc.colno)}: "
                                f"corrupt state file ({exc.msg})") from exc
        try:
            loaded = decode(text, where=str(path), site=self.site)
        except errors.StateError as exc:
            version = data.get("formatVersion") if isinstance(data, dict) else None
            owner = data.get("site") if isinstance(data, dict) else None
            if (isinstance(version, int) and version > FORMAT_VERSION) or (
                    isinstance(owner, str) and owner != self.site):
                raise
            raise _CorruptState(str(exc)) from exc
        return loaded, hashlib.sha256(raw).digest()

    def save(self, state: SiteState) -> None:
        """Write `state` durably, or not at all.

        Every byte is written to a temporary file and read back, the file is fsynced, the
        previous good record is linked as `<site>.json.bak`, the temporary file is renamed
        over `<site>.json`, and the folder is fsynced. `<site>.json` is the old or the new
        record at every moment. A failure (a full disk, a read-only folder) is a StateError
        naming the file and the cause; the previous file is kept and no temporary is left.
        """
        payload = encode(state, where=str(self.path))
        tmp = self.state_dir / f".{self.site}.json.{os.getpid()}.tmp"
        backup_tmp = self.state_dir / f".{self.site}.json.bak.{os.getpid()}.tmp"
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            _write_file(tmp, payload)
            self._keep_backup(backup_tmp)
            os.replace(tmp, self.path)
        except OSError as exc:
            for leftover in (tmp, backup_tmp):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            raise errors.StateError(
                f"{self.path}: cannot write the state ({exc.strerror or exc}); the previous "
                "state is kept; a retry helps once the state directory has room and is "
                "writable") from exc
        self._good = hashlib.sha256(payload).digest()
        try:
            dir_fd = os.open(self.state_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise errors.StateError(
                f"{self.path}: the state was written but its folder could not be synced "
                f"({exc.strerror or exc}); it may not survive a crash") from exc

    def _keep_backup(self, backup_tmp: Path) -> None:
        """Make the current `<site>.json`, if it is a good record, the backup: a hard link
        (no bytes copied, so it needs no room) renamed over `<site>.json.bak`. A corrupt
        file never replaces a good backup."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        if hashlib.sha256(raw).digest() != self._good:
            try:
                self._read(self.path)
            except errors.StateError as exc:
                log.error("%s is not kept as the backup: %s", self.path, exc)
                return
        with contextlib.suppress(FileNotFoundError):
            backup_tmp.unlink()
        try:
            os.link(self.path, backup_tmp)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                raise
            _write_file(backup_tmp, raw)  # a file system without hard links: a copy
        os.replace(backup_tmp, self.backup_path)


def _write_file(path: Path, payload: bytes) -> None:
    """`payload` in a new file at `path`, every byte written, read back and fsynced;
    OSError otherwise (ENOSPC from a full disk, EIO for a file that reads back wrong)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(payload)
        while view:  # os.write may write less than asked (a nearly full disk)
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(errno.EIO, f"{path}: a write wrote nothing")
            view = view[written:]
        os.fsync(fd)
        if os.fstat(fd).st_size != len(payload) or os.pread(
                fd, len(payload) + 1, 0) != payload:
            raise OSError(errno.EIO, f"{path} does not read back as written")
    finally:
        os.close(fd)

def sites_in(state_dir: Path) -> list[str]:
    """The sites that have a state file in `state_dir` (named by the one site-name rule)."""
    if not state_dir.is_dir():
        return []
    return sorted(p.stem for p in state_dir.iterdir()
                  if p.suffix == ".json" and contract.SITE_NAME_PATTERN.match(p.stem))
