"""Requests to a site's agent: reconcile now, suspend, resume. Called by cli and agent.

`reconciler reconcile|suspend|resume --site S` may run anywhere the site's record can be
reached: next to the agent, or from a laptop against the cluster that holds the agent's
pod. So a request is not sent to the agent: it is written where the agent looks each
loop, a site's *control record*, which only these commands write and the agent only
reads (the agent's own record, `state.py`, is written by the agent alone, so a request
never meets the agent's writes):

* with the file store, `<state-dir>/<site>.control.json`;
* with the kubernetes store, the annotations of the ConfigMap `reconciler-control-<site>`
  in the state namespace (a separate object from the state ConfigMap, whose every write
  the agent makes over its resourceVersion: an annotation there would fail the agent's
  next save), so `kubectl annotate` works too.

The record holds `reconciler.dev/requested-at` (an RFC 3339 time, as Flux's
`reconcile.fluxcd.io/requestedAt`: a value the agent has not seen triggers a pass at
once) and, while the site is suspended, `reconciler.dev/suspended-at`, `-by` and
`reconciler.dev/suspend-reason`. The agent (`Follower`) copies the suspension into the
site's state (`state.suspend()`), so `status` and every replica that takes the site over
see it; a suspended site is not fetched, accepted or applied; a rollout already running
when it is suspended ends as it would have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import getpass
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from reconciler import cluster, contract, errors
from reconciler.repo import bundle
from reconciler.site import state

log = logging.getLogger("reconciler.site.control")

REQUESTED_AT = contract.ANNOTATION_PREFIX + "requested-at"
SUSPENDED_AT = contract.ANNOTATION_PREFIX + "suspended-at"
SUSPENDED_BY = contract.ANNOTATION_PREFIX + "suspended-by"
SUSPEND_REASON = contract.ANNOTATION_PREFIX + "suspend-reason"
NAME_PREFIX = "reconciler-control-"
LABEL_CONTROL_OF = contract.ANNOTATION_PREFIX + "control-of"
POLL_EVERY = 1.0  # seconds between the agent's reads of the control record
_CONFLICT_RETRIES = 5


@dataclasses.dataclass(frozen=True)
class Control:
    """A site's control record: the last reconcile request, and the suspension."""

    requested_at: str | None = None
    suspended: state.Suspension | None = None

    def annotations(self) -> dict[str, str]:
        """The record as the annotations (and the file's keys) that hold it."""
        found: dict[str, str] = {}
        if self.requested_at is not None:
            found[REQUESTED_AT] = self.requested_at
        if self.suspended is not None:
            found[SUSPENDED_AT] = self.suspended.at
            found[SUSPENDED_BY] = self.suspended.by
            found[SUSPEND_REASON] = self.suspended.reason
        return found

    @classmethod
    def of(cls, annotations: Mapping[str, Any]) -> Control:
        """The record from annotations; values that are not strings are ignored."""
        def text(key: str) -> str | None:
            value = annotations.get(key)
            return value if isinstance(value, str) else None

        at = text(SUSPENDED_AT)
        suspended = None if at is None else state.Suspension(
            by=text(SUSPENDED_BY) or "unknown", at=at, reason=text(SUSPEND_REASON) or "")
        return cls(requested_at=text(REQUESTED_AT), suspended=suspended)


class Channel(Protocol):
    """Where a site's control record lives: a file (FileChannel) or a ConfigMap
    (KubeChannel)."""

    site: str

    @property
    def where(self) -> str: ...

    def read(self) -> Control:
        """The record; an empty one when none was written. StateError when unreadable."""
        ...

    def change(self, edit: Callable[[Control], Control]) -> Control:
        """Apply `edit` to the record as stored now and store the result."""
        ...


class FileChannel:
    """The control record of the file store: `<state-dir>/<site>.control.json`, written
    atomically under its own short lock (never the site's lock, which the agent holds)."""

    def __init__(self, *, state_dir: Path, site: str) -> None:
        bundle.check_site_name(site)
        self.state_dir = state_dir
        self.site = site
        self.path = state_dir / f"{site}.control.json"
        self._lock_path = state_dir / f".{site}.control.lock"

    @property
    def where(self) -> str:
        return str(self.path)

    def read(self) -> Control:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Control()
        except (OSError, UnicodeDecodeError) as exc:
            raise errors.StateError(f"{self.path}: cannot read the control record: {exc}") \
                from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise errors.StateError(f"{self.path}: corrupt control record ({exc.msg}); "
                                    "delete it, then suspend or resume again") from exc
        if not isinstance(data, dict):
            raise errors.StateError(f"{self.path}: corrupt control record (not an object)")
        return Control.of(data)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for a read and a rename: never long
            yield
        finally:
            os.close(fd)

    def change(self, edit: Callable[[Control], Control]) -> Control:
        with self._locked():
            updated = edit(self.read())
            payload = json.dumps(updated.annotations(), indent=2).encode() + b"\n"
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            try:
                with open(tmp, "wb") as handle:
                    handle.write(payload)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise errors.StateError(
                    f"{self.path}: cannot write the control record ({exc})") from exc
        return updated


class KubeChannel:
    """The control record of the kubernetes store: the annotations of the ConfigMap
    `reconciler-control-<site>`, written over its resourceVersion (retried on a conflict
    with another operator's write)."""

    def __init__(self, *, target: cluster.Cluster, namespace: str, site: str) -> None:
        bundle.check_site_name(site)
        self.target = target
        self.site = site
        self.namespace = namespace
        self.ref = cluster.ObjectRef("v1", "ConfigMap", namespace, NAME_PREFIX + site)

    @property
    def where(self) -> str:
        return str(self.ref)

    def _get(self) -> dict[str, Any] | None:
        try:
            return self.target.get(self.ref)
        except errors.ClusterError as exc:
            raise errors.StateError(f"{self.where}: cannot read the control record: {exc}") \
                from exc

    def read(self) -> Control:
        live = self._get()
        if live is None:
            return Control()
        return Control.of(live.get("metadata", {}).get("annotations") or {})

    def change(self, edit: Callable[[Control], Control]) -> Control:
        for _ in range(_CONFLICT_RETRIES):
            live = self._get()
            current = Control.of((live or {}).get("metadata", {}).get("annotations") or {})
            updated = edit(current)
            ours = (REQUESTED_AT, SUSPENDED_AT, SUSPENDED_BY, SUSPEND_REASON)
            kept = {k: v for k, v in ((live or {}).get("metadata", {}).get("annotations")
                                      or {}).items() if k not in ours}
            metadata: dict[str, Any] = {
                "name": self.ref.name, "namespace": self.namespace,
                "labels": {LABEL_CONTROL_OF: self.site,
                           contract.LABEL_MANAGED_BY: contract.MANAGED_BY_VALUE},
                "annotations": {**kept, **updated.annotations()}}
            body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": metadata}
            try:
                if live is None:
                    self.target.create(body)
                else:
                    metadata["resourceVersion"] = live["metadata"]["resourceVersion"]
                    self.target.update(body)
            except (errors.VersionConflictError, errors.NotFoundError):
                continue  # another operator wrote it meanwhile: read it again
            except errors.ClusterError as exc:
                raise errors.StateError(
                    f"{self.where}: cannot write the control record: {exc}") from exc
            return updated
        raise errors.StateError(f"{self.where}: the control record kept changing under "
                                f"{_CONFLICT_RETRIES} writes; try again")


def actor() -> str:
    """Who is asking, for the record: `user@host`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def request(channel: Channel, *, now: str) -> Control:
    """Ask for a reconcile now: the agent runs a pass within POLL_EVERY."""
    return channel.change(lambda current: dataclasses.replace(current, requested_at=now))


def suspend(channel: Channel, *, by: str, reason: str, now: str) -> Control:
    """Suspend the site; a site already suspended keeps its first suspension."""
    def edit(current: Control) -> Control:
        if current.suspended is not None:
            return current
        return dataclasses.replace(current, suspended=state.Suspension(by=by, at=now,
                                                                       reason=reason))
    return channel.change(edit)


def resume(channel: Channel) -> Control:
    """Resume the site; the agent then runs a pass at once."""
    return channel.change(lambda current: dataclasses.replace(current, suspended=None))


@dataclasses.dataclass(frozen=True)
class Seen:
    """What one poll of the control record found."""

    requested: bool  # a reconcile request not seen before
    suspension: state.Suspension | None  # the suspension in force (as last read)
    changed: bool  # the suspension differs from the last poll's (or from the state's)


class Follower:
    """The agent's reader of a site's control record: each `poll()` says whether a new
    reconcile was requested and whether the suspension changed. A record that cannot be
    read keeps the last suspension known (logged once per distinct error)."""

    def __init__(self, channel: Channel, *,
                 suspended: state.Suspension | None = None) -> None:
        self.channel = channel
        self._request: str | None = None
        self._first = True
        self._suspension = suspended  # from the state: what the site last recorded
        self._error: str | None = None

    @property
    def suspension(self) -> state.Suspension | None:
        return self._suspension

    def poll(self) -> Seen:
        try:
            found = self.channel.read()
        except errors.ReconcilerError as exc:
            if str(exc) != self._error:
                log.warning("site %s: %s; keeping the last suspension known",
                            self.channel.site, exc)
                self._error = str(exc)
            return Seen(requested=False, suspension=self._suspension, changed=False)
        self._error = None
        # A request older than the agent's start is served by the first pass, which runs
        # at once: only a request written since the first poll triggers another.
        requested = not self._first and found.requested_at != self._request \
            and found.requested_at is not None
        self._first = False
        self._request = found.requested_at
        changed = found.suspended != self._suspension
        self._suspension = found.suspended
        return Seen(requested=requested, suspension=found.suspended, changed=changed)
