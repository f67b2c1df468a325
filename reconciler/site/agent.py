"""`reconciler run`: the long-running site agent. Called by cli.

Two threads share one site. The watcher fetches on a poll interval (with jitter) and, for
a local repository, on file-system events on its refs (watchdog); it runs the front half
of the pipeline (pipeline.evaluate) and hands plans to the worker. The worker runs the
back half (pipeline.execute): the rollout, its health waits, prune.

Accepting a newer intent happens inside `_superseding()`. Under the agent's lock, and
only for that bookkeeping: any plan not yet started is discarded, the worker is held back
from starting another, and the running rollout's abort signal is set, which closes its
apply gate. Then, without the lock, its applies already in flight are drained (an HTTP
apply can take the client's whole read timeout), and only then is the new intent
recorded. So no apply for the old intent starts after the new one is recorded, and no
older plan starts before the acceptance is on disk; yet `stop()` and the worker never
wait behind a drain, because the agent's lock is never held across a slow call.

Shutdown while a drain waits ends the drain at once (`Abort.shut_down()`), and the
newer intent is then *not* recorded: an apply for the old intent is still in flight and
could land after it. The old rollout records itself as interrupted by shutdown when its
apply returns before the process ends (else it stays Progressing, as after a crash), and
the next start fetches again and accepts the newer intent then (acceptance is decided
from the Git state, so deferring it loses nothing). Nor is anything accepted once `stop()`
has begun. A drain that ends with no apply in flight records the intent as usual.

A failed pass (a fetch, or the API server during a rollout) is retried after a capped
exponential backoff with equal jitter (`backoff_delay()`: 1s, 2s, 4s, ... up to
`--max-backoff`), not after the poll interval; the first good pass resets it. A trigger
(a push, a webhook, `reconciler reconcile`) still starts a pass at once. A rollout that
fails while the watcher waits brings the watcher's next pass forward to its backoff.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from reconciler import cluster, durations, errors
from reconciler.repo import source
from reconciler.site import abort as aborts
from reconciler.site import control, fence, kubestate, observe, pipeline, state
from reconciler.site import lease as leases

log = logging.getLogger("reconciler.site.agent")

STOP_JOIN_TIMEOUT = 4.0  # seconds: shutdown must finish within 5
BACKOFF_BASE = 1.0  # seconds: the delay after the first failed pass, doubled after each
DEFAULT_MAX_BACKOFF = 300.0  # --max-backoff: the delay never grows past it


def backoff_delay(failures: int, *, base: float = BACKOFF_BASE,
                  cap: float = DEFAULT_MAX_BACKOFF, rng: Callable[[], float]) -> float:
    """Seconds to wait after `failures` (>= 1) failed passes in a row: `base` doubled per
    failure, capped at `cap`, with equal jitter (half fixed, half drawn from `rng()` in
    [0, 1)), so it is never below half the step and sites failing together spread out."""
    step = min(cap, base * 2.0 ** min(max(failures, 1) - 1, 62))
    return step / 2 + step / 2 * rng()


class Agent:
    """One site, reconciled until `stop()`."""

    def __init__(
        self,
        *,
        options: pipeline.Options,
        store: state.StateStore,
        target: cluster.Cluster,
        interval: float = 30.0,
        jitter: float = 0.1,
        watch_files: bool = True,
        rng: Callable[[], float] = random.random,  # injected by tests
        observer: observe.Observer = observe.ignore,  # metrics, Events, probes
        control_channel: control.Channel | None = None,  # reconcile, suspend, resume
        max_backoff: float = DEFAULT_MAX_BACKOFF,  # --max-backoff
        clock: Callable[[], float] = time.monotonic,  # injected by tests
    ) -> None:
        self.options = options
        self.target = target
        self.interval = interval
        self.jitter = jitter
        self.watch_files = watch_files
        self._rng = rng
        self.max_backoff = max_backoff
        self._clock = clock
        self.observer = observer
        self.box = pipeline.SiteBox(store)
        # `reconciler reconcile|suspend|resume`: read each loop (site/control.py)
        self._follower = None if control_channel is None else control.Follower(
            control_channel, suspended=self.box.current.suspended)
        self.repo = source.Source(url=options.url, branch=options.branch,
                                  cache_dir=options.cache_dir, access=options.access)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._trigger = threading.Event()
        self._work = threading.Condition(self._lock)
        self._pending: pipeline.Plan | None = None
        self._running: tuple[str, aborts.Abort] | None = None
        self._accepting: str | None = None  # an intent being recorded: no plan starts
        self._threads: list[threading.Thread] = []
        self._observer: _Observer | None = None
        # Backoff: failed passes in a row (front or back half), and a rollout's failure
        # that moved the watcher's next pass forward (`_rest()`); under _schedule_lock.
        self._schedule_lock = threading.Lock()
        self.failures = 0
        self._rescheduled: float | None = None  # when the worker wants the next pass
        self.passes = 0  # front-half passes done, for tests and logs
        self.rollouts = 0  # back-half runs done

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> Agent:
        """Start the watcher and the worker; the first pass runs at once."""
        self._threads = [threading.Thread(target=self._watch, name="watcher", daemon=True),
                         threading.Thread(target=self._serve, name="worker", daemon=True)]
        for thread in self._threads:
            thread.start()
        if self.watch_files:
            self._observer = _watch_refs(self.repo.url, self.options.branch, self.trigger)
        self.trigger()
        return self

    def describe(self) -> str:
        return (f"reconciling site {self.options.site} from {self.repo.display_url} (every "
                f"{self.interval:.0f}s{', and on pushes' if self._observer is not None else ''}"
                f"); state in {self.box.store.where}")

    def trigger(self) -> None:
        """Fetch now (a push event, a file-system event, a test), backoff or not."""
        with self._schedule_lock:
            self._rescheduled = None  # a real trigger, not the worker's reschedule
            self._trigger.set()

    def stop(self) -> bool:
        """End every wait, record the state, and return within the shutdown bound: True
        when every thread ended within it.

        Never blocks on a slow operation: the agent's lock and the abort's are only held
        for bookkeeping. A worker still inside an apply after STOP_JOIN_TIMEOUT is left
        behind (False; `run()` then ends the process without it): its rollout stays open
        on disk, as after a crash, and the next start picks it up.
        """
        self._stop.set()
        with self._lock:
            running = self._running
            self._work.notify_all()
        if running is not None:
            running[1].shut_down()  # ends its wait, and a drain of its applies, at once
        self._trigger.set()
        if self._observer is not None:
            self._observer.stop()
        deadline = time.monotonic() + STOP_JOIN_TIMEOUT
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    @property
    def running_intent(self) -> str | None:
        with self._lock:
            return self._running[0] if self._running else None

    @property
    def idle(self) -> bool:
        with self._lock:
            return self._running is None and self._pending is None

    # --- the watcher: fetch, decide, accept -----------------------------------------

    def _watch(self) -> None:
        while not self._stop.is_set():
            with self._schedule_lock:
                self._trigger.clear()
                self._rescheduled = None
            try:
                self._follow()
                if self.suspended is None:
                    self._pass()
                else:  # decided, as `suspend` asks, to fetch nothing: ready (the probes)
                    observe.tell(self.observer, observe.Evaluated(self.options.site))
            except Exception:
                log.exception("reconcile pass failed")
            self._rest()

    def _rest(self) -> None:
        """Wait for a trigger or until the next pass is due: the poll interval (with
        jitter) after a good pass, the backoff after a failed one. A rollout that fails
        meanwhile brings the due time forward to its own backoff (`_count()`)."""
        with self._schedule_lock:
            failures = self.failures
        if failures:
            delay = backoff_delay(failures, cap=self.max_backoff, rng=self._rng)
        else:
            delay = self.interval * (1 + self.jitter * (2 * self._rng() - 1))
        due = self._clock() + delay
        while not self._stop.is_set():
            self._wait(max(0.0, due - self._clock()))
            with self._schedule_lock:
                moved, self._rescheduled = self._rescheduled, None
                if moved is None:
                    return  # triggered, stopped, or due
                self._trigger.clear()  # the worker's wake-up, not a trigger
                due = min(due, moved)
            if self._clock() >= due:
                return

    def _count(self, *, failed: bool, what: str, wake: bool = False) -> None:
        """Record how a pass ended for the backoff: a failure adds one and logs when the
        next attempt comes (once per failure), a good pass resets it. `wake`: the worker
        asks a waiting watcher to come back at that time."""
        with self._schedule_lock:
            if not failed:
                if self.failures:
                    log.info("site %s: %s after %d failed pass(es): backoff reset",
                             self.options.site, what, self.failures)
                self.failures = 0
                return
            self.failures += 1
            delay = backoff_delay(self.failures, cap=self.max_backoff, rng=self._rng)
            if wake:
                self._rescheduled = self._clock() + delay
                self._trigger.set()
        log.warning("site %s: %s (%d in a row); next attempt in %s (backoff, at most %s), "
                    "or at once on a push", self.options.site, what, self.failures,
                    durations.format_seconds(delay), durations.format_seconds(self.max_backoff))

    @property
    def suspended(self) -> state.Suspension | None:
        """The suspension in force (`reconciler suspend`): no pass runs while it is set."""
        return self._follower.suspension if self._follower is not None else None

    def _wait(self, delay: float) -> None:
        """Wait for a trigger or `delay`, reading the control record every POLL_EVERY."""
        if self._follower is None:
            self._trigger.wait(delay)
            return
        deadline = time.monotonic() + delay
        while not self._trigger.wait(max(0.0, min(control.POLL_EVERY,
                                                  deadline - time.monotonic()))):
            if time.monotonic() >= deadline or self._stop.is_set():
                return
            try:
                self._follow()
            except Exception:
                log.exception("reading the control record failed")

    def _follow(self) -> None:
        """Act on the control record: a new request triggers a pass; a suspension is
        recorded in the state (and drops a plan not yet started), a resume triggers."""
        if self._follower is None:
            return
        seen = self._follower.poll()
        if seen.changed:
            if seen.suspension is not None:
                with self._lock:
                    self._pending = None
                log.warning("site %s suspended by %s at %s%s: nothing is applied until it "
                            "is resumed", self.options.site, seen.suspension.by,
                            seen.suspension.at,
                            f" ({seen.suspension.reason})" if seen.suspension.reason else "")
            else:
                log.info("site %s resumed", self.options.site)
                self.trigger()
            try:
                self.box.update(functools.partial(state.suspend, suspension=seen.suspension))
            except errors.ReconcilerError as exc:
                log.error("site %s: could not record the suspension: %s", self.options.site,
                          exc)
        if seen.requested and seen.suspension is None:
            log.info("site %s: reconcile requested", self.options.site)
            self.trigger()

    def _pass(self) -> None:
        plan, ended = pipeline.evaluate(box=self.box, repo=self.repo, options=self.options,
                                         superseding=self._superseding, target=self.target,
                                         observer=self.observer, wait=self._stop.wait,
                                         first=self.passes == 0)
        self.passes += 1
        if ended is not None:  # the pass ended in the front half: refused is no fault
            self._count(failed=ended.verdict is not fence.Verdict.REFUSE and not ended.ok,
                        what="pass failed" if not ended.ok else "pass ended")
        if plan is None or self._stop.is_set():
            return
        with self._lock:
            if plan.decision.verdict is fence.Verdict.ACCEPT:
                self._pending = plan  # its acceptance discarded any older plan
            elif self._running is None and self._pending is None:
                self._pending = plan  # converge: drift, a newer commit of the same intent
            else:
                return  # the intent in force is already being rolled out
            self._work.notify_all()

    @contextlib.contextmanager
    def _superseding(self, new_id: str) -> Iterator[None]:
        """The critical section in which a newer intent is recorded (see the module doc).

        Raises AbortedError, and the intent is not recorded, on shutdown: before the
        acceptance began, or while applies for the old intent were still in flight.
        """
        with self._lock:  # bookkeeping only: released before the drain
            if self._stop.is_set():
                raise errors.AbortedError(f"intent {new_id} not accepted: the agent is "
                                          "stopping; the next start accepts it")
            self._pending = None  # an older plan not yet started never starts
            self._accepting = new_id  # nor does any plan, until the acceptance is on disk
            running = self._running
            if running is not None:  # checked stop first, so this reason wins over shutdown
                running[1].set(f"superseded by {new_id}", superseded_by=new_id)
        try:
            if running is not None:
                old_id, old_abort = running
                log.warning("aborting the rollout of %s: superseded by %s", old_id, new_id)
                drained = old_abort.drain()
                if drained is aborts.Drain.INTERRUPTED:
                    raise errors.AbortedError(
                        f"intent {new_id} not accepted: the agent stopped while applies for "
                        f"{old_id} were in flight; the next start accepts it")
                if drained is aborts.Drain.TIMED_OUT:
                    # An apply of the old intent may still take effect: accepting now
                    # could let it land after the acceptance. The next pass tries again.
                    raise errors.AbortedError(
                        f"intent {new_id} not accepted yet: applies for {old_id} are still "
                        "in flight after the drain timeout; the next pass tries again")
            yield
        finally:
            with self._lock:
                self._accepting = None
                self._work.notify_all()

    # --- the worker: roll out ---------------------------------------------------------

    def _serve(self) -> None:
        while True:
            with self._lock:
                self._work.wait_for(lambda: self._stop.is_set() or (
                    self._pending is not None and self._accepting is None))
                if self._stop.is_set():
                    return
                plan, self._pending = self._pending, None
                assert plan is not None
                signal = aborts.Abort()
                self._running = (plan.decision.intent_id, signal)
            try:
                final = pipeline.execute(box=self.box, plan=plan, target=self.target,
                                         options=self.options, abort=signal,
                                         observer=self.observer)
                if final.phase is not state.Outcome.ABORTED:
                    self._count(failed=not final.ok, wake=not final.ok,
                                what=f"rollout of {plan.decision.intent_id} "
                                     f"{'failed' if not final.ok else 'succeeded'}")
            except Exception:
                log.exception("rollout of %s crashed", plan.decision.intent_id)
                self._count(failed=True, wake=True, what="rollout crashed")
            finally:
                with self._lock:
                    self._running = None
                    self.rollouts += 1
                    self._work.notify_all()


class Runner(Protocol):
    """What `run()` keeps going: an Agent, or an Elected site."""

    def start(self) -> object: ...

    def stop(self) -> bool: ...

    def describe(self) -> str: ...

    def trigger(self) -> None: ...


def run(*, agent: Runner | None = None, agents: Sequence[Runner] = (),
        install_signals: bool = True) -> int:
    """Run `agent` (or every one of `agents`: `run --site A --site B`, one worker each in
    this process) in the foreground until SIGTERM or SIGINT; 0 after a clean stop.

    The foreground of `reconciler run`, and it ends the process itself when a rollout is
    still inside an apply after the shutdown bound: the interpreter would otherwise join
    that apply's thread at exit, for up to the client's read timeout. It exits at once,
    still holding the site's lock, so nothing is written after the lock is released; the
    state on disk is the last one saved, and the rollout resumes on the next start, as
    after a crash.
    """
    import signal

    runners = [*([agent] if agent is not None else []), *agents]
    stopping = threading.Event()

    def stop_all() -> None:
        stopping.set()

    def handle(signum: int, _frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop_all()

    previous = {}
    if install_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handle)
    try:
        for runner in runners:
            runner.start()
            log.info("%s", runner.describe())
        while not stopping.wait(1.0):
            if runners and all(isinstance(r, Agent) and r.wait_stopped(0) for r in runners):
                break
        results: list[bool] = [False] * len(runners)

        def stop_one(index: int) -> None:
            results[index] = runners[index].stop()

        stoppers = [threading.Thread(target=stop_one, args=(i,), name="stopper", daemon=True)
                    for i in range(len(runners))]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join(STOP_JOIN_TIMEOUT + 0.5)
        if not all(results):
            log.warning("stopped with an apply still unanswered after %.0fs; exiting without "
                        "it (the rollout resumes on the next start)", STOP_JOIN_TIMEOUT)
            logging.shutdown()  # flush the log: os._exit skips the interpreter's own exit
            sys.stdout.flush()
            os._exit(0)
        log.info("stopped; state recorded")
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Elected:
    """One site run under its Lease (`--state-store kubernetes`): an Agent while this
    replica holds the lease, none otherwise.

    Its lease thread takes the lease (retrying every `renew_every`), then starts a fresh
    Agent, which reads the state anew, and renews. Its guard thread stops that Agent when
    `lease.held()` turns False (the renew deadline passed without a renewal): the running
    rollout is aborted as on shutdown, its writes refused from then on (the store's guard),
    and it stays open in the record for the next holder to resume. A save that met
    another writer (StateConflictError) also restarts the Agent, so it reads the record
    again. `stop()` stops the Agent and releases the lease, so another replica takes over
    at once; not when an apply is still unanswered, which could land after the next
    holder's: the lease then expires by itself.
    """

    def __init__(self, *, site: str, lease: leases.Lease,
                 make_agent: Callable[[], Agent]) -> None:
        self.site = site
        self.lease = lease
        self._make_agent = make_agent
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._agent: Agent | None = None
        self._threads: list[threading.Thread] = []
        self.terms = 0  # how many times this replica took the lease, for tests and logs

    @property
    def agent(self) -> Agent | None:
        with self._lock:
            return self._agent

    def describe(self) -> str:
        timing = self.lease.timing
        return (f"site {self.site}: waiting for {self.lease.ref} as {self.lease.holder} "
                f"(duration {timing.duration:g}s, renew every {timing.every:g}s, deadline "
                f"{timing.deadline:g}s)")

    def trigger(self) -> None:
        """Fetch now, when this replica runs the site (a webhook); else nothing."""
        running = self.agent
        if running is not None:
            running.trigger()

    def start(self) -> Elected:
        self._threads = [threading.Thread(target=self._campaign, name=f"lease-{self.site}",
                                          daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> bool:
        self._stop.set()
        with self._lock:
            running = self._agent
        stopped = running.stop() if running is not None else True
        for thread in self._threads:
            thread.join(1.0)
        if stopped:
            self.lease.release()
        else:  # an apply may still land: another replica must wait for the lease to expire
            log.warning("site %s: stopping with an apply unanswered: not releasing %s, which "
                        "expires by itself", self.site, self.lease.ref)
        return stopped

    def _campaign(self) -> None:
        every = self.lease.timing.every
        while not self._stop.is_set():
            if not self.lease.acquire():
                self._stop.wait(every)
                continue
            if self._stop.is_set():
                break
            self.terms += 1
            log.info("site %s: this replica holds %s: reconciling", self.site, self.lease.ref)
            try:
                running = self._make_agent()
            except errors.ReconcilerError as exc:
                log.error("site %s: cannot start: %s", self.site, exc)
                self._stop.wait(every)
                continue
            with self._lock:
                self._agent = running
            guard = threading.Thread(target=self._guard, args=(running,),
                                     name=f"lease-guard-{self.site}", daemon=True)
            guard.start()
            running.start()
            next_renewal = time.monotonic() + every
            while not self._stop.is_set() and guard.is_alive():
                self._stop.wait(max(0.0, min(next_renewal - time.monotonic(), 0.2)))
                if time.monotonic() >= next_renewal and self.lease.held():
                    if not self.lease.renew():
                        log.warning("site %s: could not renew %s (%.1fs left)", self.site,
                                    self.lease.ref, self.lease.remaining())
                    next_renewal = time.monotonic() + every
            guard.join()

    def _guard(self, running: Agent) -> None:
        """Stop `running` the moment the lease is no longer held, or on a state conflict."""
        while not self._stop.is_set():
            left = self.lease.remaining()
            if left <= 0:
                log.error("site %s: lost %s (not renewed within %gs): stopping the rollout",
                          self.site, self.lease.ref, self.lease.timing.deadline)
                break
            if isinstance(running.box.store, kubestate.KubeStateStore) \
                    and running.box.store.conflicted:
                log.error("site %s: another writer changed the state: reading it again",
                          self.site)
                break
            self._stop.wait(min(left, 0.1))
        if not self._stop.is_set():
            running.stop()
        with self._lock:
            if self._agent is running:
                self._agent = None


class _Observer(Protocol):
    """What the agent needs of a watchdog observer."""

    def stop(self) -> None: ...


def _watch_refs(url: str, branch: str, on_change: Callable[[], None]) -> _Observer | None:
    """A watchdog observer on a local repository's refs, or None for a remote URL."""
    path = Path(url[len("file://"):] if url.startswith("file://") else url)
    if ("://" in url and not url.startswith("file://")) or not path.exists():
        return None
    git_dir = path if (path / "HEAD").exists() and (path / "refs").is_dir() else path / ".git"
    if not (git_dir / "refs").is_dir():
        return None
    from watchdog import events, observers

    # Only writes: every fetch *reads* the refs, and reacting to reads would make each pass
    # trigger the next (seen in the abort benchmark: ten passes a second, never idle).
    writes = {events.EVENT_TYPE_CREATED, events.EVENT_TYPE_MODIFIED, events.EVENT_TYPE_MOVED,
              events.EVENT_TYPE_DELETED, events.EVENT_TYPE_CLOSED}

    class Handler(events.FileSystemEventHandler):
        def on_any_event(self, event: events.FileSystemEvent) -> None:
            if event.event_type not in writes:
                return
            name = str(event.src_path) + " " + str(getattr(event, "dest_path", ""))
            if "refs" in name:
                on_change()

    observer = observers.Observer()
    observer.schedule(Handler(), str(git_dir / "refs"), recursive=True)
    observer.schedule(Handler(), str(git_dir), recursive=False)  # packed-refs
    observer.daemon = True
    observer.start()
    log.debug("watching %s for pushes to %s", git_dir, branch)
    return observer
