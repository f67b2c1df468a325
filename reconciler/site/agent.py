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
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from reconciler import cluster, errors
from reconciler.repo import source
from reconciler.site import abort as aborts
from reconciler.site import fence, pipeline, state

log = logging.getLogger("reconciler.site.agent")

STOP_JOIN_TIMEOUT = 4.0  # seconds: shutdown must finish within 5


class Agent:
    """One site, reconciled until `stop()`."""

    def __init__(
        self,
        *,
        options: pipeline.Options,
        store: state.FileStateStore,
        target: cluster.Cluster,
        interval: float = 30.0,
        jitter: float = 0.1,
        watch_files: bool = True,
        rng: Callable[[], float] = random.random,  # injected by tests
    ) -> None:
        self.options = options
        self.target = target
        self.interval = interval
        self.jitter = jitter
        self.watch_files = watch_files
        self._rng = rng
        self.box = pipeline.SiteBox(store)
        self.repo = source.Source(url=options.url, branch=options.branch,
                                  cache_dir=options.cache_dir)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._trigger = threading.Event()
        self._work = threading.Condition(self._lock)
        self._pending: pipeline.Plan | None = None
        self._running: tuple[str, aborts.Abort] | None = None
        self._accepting: str | None = None  # an intent being recorded: no plan starts
        self._threads: list[threading.Thread] = []
        self._observer: _Observer | None = None
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

    def trigger(self) -> None:
        """Fetch now (a push event, a file-system event, a test)."""
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
            self._trigger.clear()
            try:
                self._pass()
            except Exception:
                log.exception("reconcile pass failed")
            delay = self.interval * (1 + self.jitter * (2 * self._rng() - 1))
            self._trigger.wait(delay)

    def _pass(self) -> None:
        plan, _ = pipeline.evaluate(box=self.box, repo=self.repo, options=self.options,
                                     superseding=self._superseding)
        self.passes += 1
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
                    log.error("applies for %s still in flight after the drain timeout", old_id)
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
                pipeline.execute(box=self.box, plan=plan, target=self.target,
                                  options=self.options, abort=signal)
            except Exception:
                log.exception("rollout of %s crashed", plan.decision.intent_id)
            finally:
                with self._lock:
                    self._running = None
                    self.rollouts += 1
                    self._work.notify_all()


def run(*, agent: Agent, install_signals: bool = True) -> int:
    """Run `agent` in the foreground until SIGTERM or SIGINT; 0 after a clean stop.

    The foreground of `reconciler run`, and it ends the process itself when a rollout is
    still inside an apply after the shutdown bound: the interpreter would otherwise join
    that apply's thread at exit, for up to the client's read timeout. It exits at once,
    still holding the site's lock, so nothing is written after the lock is released; the
    state on disk is the last one saved, and the rollout resumes on the next start, as
    after a crash.
    """
    import signal

    def handle(signum: int, _frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        threading.Thread(target=agent.stop, name="stopper", daemon=True).start()

    previous = {}
    if install_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handle)
    try:
        agent.start()
        log.info("reconciling site %s from %s (every %.0fs%s)", agent.options.site,
                 agent.repo.display_url, agent.interval,
                 ", and on pushes" if agent._observer is not None else "")
        while not agent.wait_stopped(1.0):
            pass
        if not agent.stop():
            log.warning("stopped with an apply still unanswered after %.0fs; exiting without "
                        "it (the rollout resumes on the next start); state recorded in %s",
                        STOP_JOIN_TIMEOUT, agent.box.store.path)
            logging.shutdown()  # flush the log: os._exit skips the interpreter's own exit
            sys.stdout.flush()
            os._exit(0)
        log.info("stopped; state recorded in %s", agent.box.store.path)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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
