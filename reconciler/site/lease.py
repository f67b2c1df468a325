"""Leader election per site: one coordination.k8s.io/v1 Lease each. Called by agent.

Of the replicas that run a site (`reconciler run --state-store kubernetes`), only the
holder of the Lease `reconciler-<site>` in the state namespace reconciles it. As in
client-go's leaderelection, nobody trusts another machine's clock: a candidate takes the
Lease only after it has seen the same record (holder, renewTime, transitions) unchanged for
a whole `leaseDurationSeconds` by its own monotonic clock, and every write is an update over
the resourceVersion read, so of two candidates exactly one wins.

The holder renews every `renew_every` (a third of the duration by default). It counts
itself the holder only until `renew_deadline` (two thirds) after the *start* of its last
successful renewal: past that, `held()` is False and the agent stops applying, before any
other replica can have seen the Lease unchanged for a whole duration. The difference
(a third of the duration) is the bound on how late an apply already in flight may land.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from reconciler import cluster, errors

log = logging.getLogger("reconciler.site.lease")

NAME_PREFIX = "reconciler-"
DEFAULT_DURATION = 15.0  # seconds


def lease_name(site: str) -> str:
    return NAME_PREFIX + site


def identity() -> str:
    """Who holds a lease: the pod's name (its hostname) and the process id."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{os.getpid()}"


def _micro_time(moment: datetime.datetime) -> str:
    """A Kubernetes MicroTime: `2026-11-27T12:00:00.123456Z`."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass(frozen=True)
class Timing:
    """How long a lease lasts and how its holder keeps it."""

    duration: float = DEFAULT_DURATION
    renew_every: float | None = None  # default: a third of the duration
    renew_deadline: float | None = None  # default: two thirds of the duration

    @property
    def every(self) -> float:
        return self.renew_every if self.renew_every is not None else self.duration / 3

    @property
    def deadline(self) -> float:
        return self.renew_deadline if self.renew_deadline is not None \
            else self.duration * 2 / 3

    def check(self) -> None:
        if not 0 < self.every < self.deadline < self.duration:
            raise errors.UsageError(
                f"lease timing must be 0 < renew every ({self.every:g}s) < renew deadline "
                f"({self.deadline:g}s) < duration ({self.duration:g}s)")


class Lease:
    """One site's Lease, as one replica sees it. Thread-safe: `held()` is read by the
    agent's threads while `acquire()` and `renew()` run in the site's lease thread."""

    def __init__(self, *, target: cluster.Cluster, namespace: str, site: str,
                 holder: str, timing: Timing = Timing(),
                 clock: Callable[[], float] = time.monotonic,  # injected by tests
                 wall: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(
                     datetime.UTC)) -> None:  # injected by tests
        timing.check()
        self.target = target
        self.site = site
        self.holder = holder
        self.timing = timing
        self.ref = cluster.ObjectRef("coordination.k8s.io/v1", "Lease", namespace,
                                     lease_name(site))
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._valid_until = 0.0  # monotonic: held() until then
        self._live: dict[str, Any] | None = None  # the Lease as last read or written
        self._seen: tuple[Any, ...] | None = None  # its record when first seen unchanged
        self._seen_at = 0.0
        self.last_error: errors.ClusterError | None = None  # the last read or write's failure

    # --- what the agent asks ----------------------------------------------------------

    def held(self) -> bool:
        """True while this replica may write for the site: before the renew deadline."""
        with self._lock:
            return self._clock() < self._valid_until

    def remaining(self) -> float:
        """Seconds until `held()` turns False without a renewal (<= 0 when it has)."""
        with self._lock:
            return self._valid_until - self._clock()

    def guard(self) -> None:
        """Raise NotLeaderError unless `held()`: the state store's check before a save."""
        if not self.held():
            raise errors.NotLeaderError(
                f"{self.ref}: this replica ({self.holder}) no longer holds the lease of site "
                f"{self.site!r}; not writing")

    # --- the lease thread's steps ------------------------------------------------------

    def acquire(self) -> bool:
        """One attempt to take (or keep) the lease; True when this replica holds it now."""
        started = self._clock()
        try:
            live = self.target.get(self.ref)
        except errors.ClusterError as exc:
            log.warning("cannot read %s: %s", self.ref, exc)
            self.last_error = exc
            return False
        self.last_error = None
        if live is None:
            return self._write(None, started=started, transitions=0)
        spec = live.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"),
                  spec.get("leaseTransitions"), spec.get("leaseDurationSeconds"))
        now = self._clock()
        with self._lock:
            if record != self._seen:
                self._seen, self._seen_at = record, now
            seen_for = now - self._seen_at
        holder = spec.get("holderIdentity")
        duration = float(spec.get("leaseDurationSeconds") or self.timing.duration)
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.holder:
            return self._write(live, started=started, transitions=transitions)
        if holder and seen_for < duration:
            return False  # another replica's, and not seen to expire yet
        if holder:
            log.warning("lease of site %s held by %s expired (unchanged for %.1fs): taking "
                        "it over", self.site, holder, seen_for)
        return self._write(live, started=started, transitions=transitions + 1)

    def renew(self) -> bool:
        """Renew the lease this replica holds; False when it could not (it may still be
        held until the deadline: see `held()`). After a conflict (another replica's write,
        or this one's whose answer was lost) it reads the Lease again, as `acquire()`: a
        record still naming this replica is renewed."""
        with self._lock:
            live = self._live
        if live is None:
            return self.acquire()
        spec = live.get("spec") or {}
        if spec.get("holderIdentity") != self.holder:
            return False
        if self._write(live, started=self._clock(),
                       transitions=int(spec.get("leaseTransitions") or 0)):
            return True
        with self._lock:
            conflicted = self._live is None
        return self.acquire() if conflicted else False

    def release(self) -> None:
        """Give the lease up on a clean stop, so another replica takes over at once."""
        with self._lock:
            live, self._valid_until = self._live, 0.0
        if live is None or (live.get("spec") or {}).get("holderIdentity") != self.holder:
            return
        body = {**live, "spec": {**live["spec"], "holderIdentity": None,
                                 "leaseDurationSeconds": 1}}
        try:
            self.target.update(body)
        except errors.ClusterError as exc:
            log.info("could not release %s (it expires by itself): %s", self.ref, exc)

    def _write(self, live: dict[str, Any] | None, *, started: float, transitions: int) -> bool:
        now = _micro_time(self._wall())
        spec: dict[str, Any] = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": max(1, round(self.timing.duration)),
            "renewTime": now, "leaseTransitions": transitions,
        }
        mine = live is not None and (live.get("spec") or {}).get("holderIdentity") == self.holder
        previous = (live or {}).get("spec") or {}
        spec["acquireTime"] = previous.get("acquireTime", now) if mine else now
        try:
            if live is None:
                stored = self.target.create({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.ref.name, "namespace": self.ref.namespace},
                    "spec": spec})
            else:
                stored = self.target.update({**live, "spec": spec})
        except errors.VersionConflictError:
            log.info("lease of site %s: another replica wrote it first", self.site)
            with self._lock:
                self._live = None
            return False
        except errors.ClusterError as exc:
            log.warning("cannot write %s: %s", self.ref, exc)
            self.last_error = exc
            return False
        with self._lock:
            self._live = stored
            self._valid_until = max(self._valid_until, started + self.timing.deadline)
        if not mine:
            log.info("acquired the lease of site %s as %s", self.site, self.holder)
        return True


@contextlib.contextmanager
def holding(site_lease: Lease, *, on_lost: Callable[[], None]) -> Iterator[None]:
    """Hold `site_lease` for one pass (`sync --state-store kubernetes`): take it, waiting
    at most a lease duration and a renew period (a lease whose holder is gone is taken once
    it was seen unrenewed for a whole duration), or raise StateLockedError naming its
    holder; renew it in a thread meanwhile, and call `on_lost` (the pass's abort) the
    moment it is no longer held; release it after."""
    give_up = time.monotonic() + site_lease.timing.duration + site_lease.timing.every
    while not site_lease.acquire():
        if time.monotonic() >= give_up:
            failed = site_lease.last_error
            try:
                live = site_lease.target.get(site_lease.ref) or {}
            except errors.ClusterError as exc:
                live, failed = {}, exc
            holder = (live.get("spec") or {}).get("holderIdentity")
            if failed is not None and holder in (None, site_lease.holder):
                raise errors.StateError(
                    f"cannot take {site_lease.ref}, the lock of site {site_lease.site!r}: "
                    f"{failed}") from failed
            raise errors.StateLockedError(
                f"site {site_lease.site!r} is held by another reconciler "
                f"({holder or 'unknown'}) through {site_lease.ref}, which renews it; only one "
                "reconciler may run per site")
        threading.Event().wait(min(site_lease.timing.every,
                                   max(0.1, give_up - time.monotonic())))
    done = threading.Event()

    def keep() -> None:
        next_renewal = time.monotonic() + site_lease.timing.every
        while not done.is_set():
            left = site_lease.remaining()
            if left <= 0:
                log.error("lost %s: stopping the pass", site_lease.ref)
                on_lost()
                return
            done.wait(max(0.0, min(left, next_renewal - time.monotonic(), 0.1)))
            if time.monotonic() >= next_renewal:
                site_lease.renew()
                next_renewal = time.monotonic() + site_lease.timing.every

    keeper = threading.Thread(target=keep, name=f"lease-{site_lease.site}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        done.set()
        keeper.join(5.0)
        site_lease.release()
