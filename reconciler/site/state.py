"""The durable record of one site: the state file format and its store. Owned here alone.

`<state-dir>/<site>.json` is written atomically (temp file, fsync, rename, fsync of the
folder) and checked against `schemas/state.schema.json` on every load and save. An
exclusive lock on `<state-dir>/<site>.lock` keeps a second reconciler off the same site.
The format carries `formatVersion`; it never changes silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import errno
import fcntl
import json
import os
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reconciler import errors
from reconciler.repo import documents, schemas
from reconciler.site import fence

FORMAT_VERSION = 2  # 2: inventory entries carry their wave. Version 1 files still load.
READABLE_VERSIONS = (1, 2)
HISTORY_LIMIT = 50
ERRORS_LIMIT = 20


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
    stage: str  # fetch, bundle, validate, fence, apply, state
    message: str
    commit: str | None = None


@dataclasses.dataclass(frozen=True)
class SyncRecord:
    """The last reconcile pass: when, on which commit, and how it went."""

    started_at: str
    commit: str | None
    result: str  # ok, failed, refused
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

    def superseded_ids(self) -> frozenset[str]:
        """Ids this site accepted and later replaced: a replay of one is refused."""
        return frozenset(e.id for e in self.history if e.superseded_by)

    def with_error(self, error: ErrorRecord) -> SiteState:
        return dataclasses.replace(self, errors=(*self.errors, error)[-ERRORS_LIMIT:])

    def with_history(self, entry: HistoryEntry) -> SiteState:
        """Add `entry`, or replace the entry of the same id and commit."""
        kept = tuple(e for e in self.history if (e.id, e.commit) != (entry.id, entry.commit))
        return dataclasses.replace(self, history=(*kept, entry)[-HISTORY_LIMIT:])

    def update_history(self, intent_id: str, **changes: Any) -> SiteState:
        """Change the newest history entry of `intent_id`."""
        history = list(self.history)
        for index in range(len(history) - 1, -1, -1):
            if history[index].id == intent_id and history[index].outcome != Outcome.REFUSED:
                history[index] = dataclasses.replace(history[index], **changes)
                break
        return dataclasses.replace(self, history=tuple(history))


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

class FileStateStore:
    """One site's state as a JSON file in a state directory."""

    def __init__(self, *, state_dir: Path, site: str) -> None:
        self.state_dir = state_dir
        self.site = site
        self.path = state_dir / f"{site}.json"
        self.lock_path = state_dir / f"{site}.lock"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the site's exclusive lock; refuse at once when another process holds it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
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
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def load(self) -> SiteState:
        """The recorded state, or an empty one for a site never synced.

        A file that is not JSON, breaks the schema or has an unknown format version is a
        StateError; it is left as it is for a person to look at.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return SiteState(site=self.site)
        except UnicodeDecodeError as exc:
            raise errors.StateError(
                f"{self.path}: corrupt state file (not UTF-8 at byte {exc.start}); it was left "
                "untouched: repair it, or move it aside to start the site afresh"
            ) from None
        except OSError as exc:
            raise errors.StateError(f"{self.path}: cannot read state file: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise errors.StateError(
                f"{self.path}: corrupt state file (line {exc.lineno}: {exc.msg}); it was left "
                "untouched: repair it, or move it aside to start the site afresh"
            ) from None
        version = data.get("formatVersion") if isinstance(data, dict) else None
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise errors.StateError(
                f"{self.path}: state format version {version} is newer than this "
                f"reconciler's ({FORMAT_VERSION}); upgrade the reconciler"
            )
        self._check(data, what="corrupt state file")
        if data["site"] != self.site:
            raise errors.StateError(
                f"{self.path}: state file belongs to site {data['site']!r}, not {self.site!r}"
            )
        state: SiteState = from_json(SiteState, data)
        # An older format loads with the new fields' defaults and is saved as the new one.
        return dataclasses.replace(state, format_version=FORMAT_VERSION)

    def save(self, state: SiteState) -> None:
        """Write `state` durably: temp file, fsync, rename, fsync of the folder."""
        data = to_json(state)
        self._check(data, what="refusing to write an invalid state")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / f".{self.site}.json.{os.getpid()}.tmp"
        payload = json.dumps(data, indent=2, sort_keys=False).encode() + b"\n"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _check(self, data: Any, *, what: str) -> None:
        problems = schemas.schema_errors(
            data, schema=schemas.STATE_SCHEMA,
            location=documents.Location(file=str(self.path), document=0),
        )
        if problems:
            detail = "; ".join(p.short() for p in problems[:5])
            raise errors.StateError(f"{self.path}: {what}: {detail}")


SITE_FILE = re.compile(r"^(?P<site>[a-z0-9][-a-z0-9.]*)\.json$")


def sites_in(state_dir: Path) -> list[str]:
    """The sites that have a state file in `state_dir`."""
    if not state_dir.is_dir():
        return []
    return sorted(m["site"] for p in state_dir.iterdir() if (m := SITE_FILE.match(p.name)))
