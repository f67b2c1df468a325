"""Kubernetes Events for what a site's reconciler did: accepted, aborted, dropped, refused,
failed, succeeded. An observer (site/observe.py) that `reconciler run` wires; it writes
through the Cluster port's `record_event()`.

Like client-go's recorder, an Event that recurs (the same site, type, reason and message:
a fetch that keeps failing, a stale manifest dropped on every pass) is one Event whose
count grows, never a new one each time; and a recurring Event is written at most once per
`patch_every` seconds, its count carried to the next write. Writes happen on the
recorder's own thread, from a bounded queue, so a slow or unreachable API server never
slows a pass down: when the queue is full an Event is dropped, and logged.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import queue
import threading
import time
from collections.abc import Callable

from reconciler import cluster, contract, errors
from reconciler.site import observe, state

log = logging.getLogger("reconciler.site.events")

NORMAL, WARNING = "Normal", "Warning"
MESSAGE_LIMIT = 1024  # what events.k8s.io allows in a note; kubectl shows it whole
KEYS_LIMIT = 1024  # distinct Events remembered for their counts, oldest forgotten first

Regarding = Callable[[str], tuple[cluster.ObjectRef, str]]  # site -> (object, Event namespace)


def state_object(namespace: str) -> Regarding:
    """Events regarding the site's state ConfigMap (`--state-store kubernetes`)."""
    from reconciler.site import kubestate

    def regarding(site: str) -> tuple[cluster.ObjectRef, str]:
        return cluster.ObjectRef("v1", "ConfigMap", namespace,
                                 kubestate.object_name(site)), namespace
    return regarding


def namespace_object(namespace: str) -> Regarding:
    """Events regarding the reconciler's Namespace (the file store has no object in the
    cluster); a cluster-scoped object's Events live in `default`, as Kubernetes keeps them."""
    def regarding(_site: str) -> tuple[cluster.ObjectRef, str]:
        return cluster.ObjectRef("v1", "Namespace", None, namespace), "default"
    return regarding


@dataclasses.dataclass(frozen=True)
class Note:
    """What one happening says, before it becomes an Event."""

    site: str
    type: str
    reason: str
    message: str


def note_of(happening: observe.Happening) -> Note | None:
    """The Event a happening deserves, or None. Pure."""
    match happening:
        case observe.Accepted(site=site, intent_id=new, sequence=sequence, commit=commit,
                              previous=previous):
            text = f"accepted intent {new}" + (f" (sequence {sequence})" if sequence else "")
            text += f" at commit {commit[:12]}"
            text += f", superseding {previous}" if previous else ""
            return Note(site, NORMAL, "Accepted", text)
        case observe.Refused(site=site, intent_id=refused, reason=reason):
            return Note(site, WARNING, "Refused", f"refused intent {refused}: {reason}")
        case observe.Dropped(site=site, intent_id=intent_id, drops=drops) if drops:
            shown = "; ".join(f"{d.location.position} {d.object} "
                              f"({'carries ' + d.carried if d.carried else 'no intent id'})"
                              for d in drops)
            return Note(site, WARNING, "Dropped",
                        f"{len(drops)} manifest(s) dropped, not of intent {intent_id} "
                        f"(their objects are held): {shown}")
        case observe.RolloutEnded(site=site, intent_id=intent_id, outcome=outcome,
                                  superseded_by=newer) if (
                                      outcome is state.Outcome.ABORTED and newer):
            return Note(site, WARNING, "Aborted",
                        f"rollout of intent {intent_id} aborted: superseded by {newer}")
        case observe.RolloutEnded(site=site, intent_id=intent_id, outcome=outcome,
                                  drift=False) if outcome is state.Outcome.SUCCEEDED:
            return Note(site, NORMAL, "Succeeded", f"intent {intent_id} rolled out")
        case observe.PassEnded(site=site, result="failed", stage=stage, message=message):
            return Note(site, WARNING, "Failed", f"{stage or 'pass'} failed: {message}")
    return None


@dataclasses.dataclass
class _Kept:
    """An Event as last written, and how many times it happened since."""

    event: cluster.Event
    written_at: float
    unwritten: int = 0  # occurrences not yet written


class Recorder:
    """The observer that records Events; `start()` its thread, `stop()` to flush."""

    def __init__(self, *, target: cluster.Cluster, regarding: Regarding, instance: str = "",
                 patch_every: float = 60.0, queue_size: int = 256,
                 clock: Callable[[], float] = time.monotonic,  # injected by tests
                 wall: Callable[[], datetime.datetime] = (
                     lambda: datetime.datetime.now(datetime.UTC))) -> None:
        self.target = target
        self.regarding = regarding
        self.instance = instance
        self.patch_every = patch_every
        self._clock = clock
        self._wall = wall
        self._queue: queue.Queue[Note | None] = queue.Queue(maxsize=queue_size)
        self._kept: collections.OrderedDict[tuple[str, str, str, str], _Kept] = (
            collections.OrderedDict())
        self._thread: threading.Thread | None = None
        self._failing = False  # the last write failed: log the next failure at debug only
        self.written = 0  # Events written (created or patched), for tests

    def __call__(self, happening: observe.Happening) -> None:
        found = note_of(happening)
        if found is None:
            return
        try:
            self._queue.put_nowait(found)
        except queue.Full:
            log.warning("event queue full: %s %s for site %s not recorded", found.type,
                        found.reason, found.site)

    def start(self) -> Recorder:
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Write what is queued and the counts not yet written, within `timeout`."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                self.flush(due_only=True)
                continue
            if item is None:
                self.flush(due_only=False)
                return
            self.record(item)

    def record(self, found: Note) -> None:
        """Write `found` as a new Event, or count it into the one it repeats."""
        key = (found.site, found.type, found.reason, found.message)
        kept = self._kept.get(key)
        now = self._clock()
        if kept is not None:
            self._kept.move_to_end(key)
            kept.unwritten += 1
            if now - kept.written_at >= self.patch_every:
                self._write_count(kept)
            return
        ref, namespace = self.regarding(found.site)
        stamp = _time(self._wall())
        event = cluster.Event(
            name=f"{ref.name}.{time.time_ns():x}", namespace=namespace, regarding=ref,
            type=found.type, reason=found.reason,
            message=f"site {found.site}: {found.message}"[:MESSAGE_LIMIT], first=stamp,
            last=stamp, instance=self.instance, labels={contract.LABEL_SITE: found.site})
        self._kept[key] = _Kept(event=event, written_at=now)
        while len(self._kept) > KEYS_LIMIT:
            self._kept.popitem(last=False)
        self._write(event)

    def flush(self, *, due_only: bool) -> None:
        """Write the counts not yet written (only those due, or all)."""
        now = self._clock()
        for kept in list(self._kept.values()):
            if kept.unwritten and (not due_only or now - kept.written_at >= self.patch_every):
                self._write_count(kept)

    def _write_count(self, kept: _Kept) -> None:
        kept.event = dataclasses.replace(kept.event, count=kept.event.count + kept.unwritten,
                                         last=_time(self._wall()))
        kept.unwritten = 0
        kept.written_at = self._clock()
        self._write(kept.event)

    def _write(self, event: cluster.Event) -> None:
        try:
            self.target.record_event(event)
        except errors.ClusterError as exc:
            (log.debug if self._failing else log.warning)(
                "event %s %s not recorded: %s", event.reason, event.name, exc)
            self._failing = True
            return
        except Exception:
            log.exception("event %s %s not recorded", event.reason, event.name)
            return
        self._failing = False
        self.written += 1


def _time(moment: datetime.datetime) -> str:
    """A Kubernetes Time: RFC 3339 in seconds, UTC."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
