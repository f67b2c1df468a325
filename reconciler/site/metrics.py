"""Prometheus metrics, `/healthz` and `/readyz` of `reconciler run --metrics-port`. Both
are observers of the pipeline (site/observe.py) that cli wires; the routes are served by
site/endpoints.py.

Every metric is named `reconciler_*` and carries a `site` label (the list, with the alerts
worth setting, is in docs/deploy.md). Each Metrics has a registry of its own, never the
client's global one, so two agents in one process (tests) never share counters.

Liveness (`/healthz`): no front half (fetch, read, decide) has been running for longer
than `stuck_after`; a watcher wedged in a fetch or a lock fails it, a long rollout does not
(its worker waits with a deadline of its own). Readiness (`/readyz`): every site this
process runs (`expected`, and any whose agent started later, as a site taken over under
its Lease) has finished its first front half since the process started, whatever it
decided: the replica has fetched, read its state and is reporting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import prometheus_client
import prometheus_client.registry

from reconciler.site import endpoints, observe, state

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

# Seconds: an apply of a wave is usually under a second, a health wait minutes.
APPLY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
WAIT_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)


class Metrics:
    """The reconciler's metrics, fed by happenings; `render()` is the /metrics body."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,  # injected by tests
                 wall: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, int], tuple[state.WavePhase, float]] = {}
        # No `*_created` series beside each counter and histogram: they double the output
        # and say only when the process first counted (a process-wide setting).
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream
        self.registry = prometheus_client.registry.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.intent = prometheus_client.Info(
            "reconciler_intent", "The intent in force at the site, as recorded: its id, "
            "sequence and the commit it was accepted at.", ["site"], registry=r)
        self.rollouts = prometheus_client.Counter(
            "reconciler_rollouts", "Rollouts ended, by outcome (succeeded, failed, aborted, "
            "interrupted by shutdown).", ["site", "outcome"], registry=r)
        self.aborts = prometheus_client.Counter(
            "reconciler_aborts", "Rollouts aborted because a newer intent was accepted.",
            ["site"], registry=r)
        self.accepted = prometheus_client.Counter(
            "reconciler_intents_accepted", "Intents accepted.", ["site"], registry=r)
        self.refused = prometheus_client.Counter(
            "reconciler_intents_refused", "Passes that refused the intent at the head "
            "(a lower or equal sequence, an id accepted before).", ["site"], registry=r)
        self.drops = prometheus_client.Gauge(
            "reconciler_dropped_manifests", "Manifests the last revision read dropped: they "
            "carry another intent id (or none), and their objects are held.", ["site"],
            registry=r)
        self.passes = prometheus_client.Counter(
            "reconciler_passes", "Reconcile passes ended, by result (ok, failed, refused, "
            "aborted).", ["site", "result"], registry=r)
        self.apply_seconds = prometheus_client.Histogram(
            "reconciler_apply_duration_seconds", "Time to apply one wave.", ["site"],
            buckets=APPLY_BUCKETS, registry=r)
        self.wait_seconds = prometheus_client.Histogram(
            "reconciler_wait_duration_seconds", "Time one wave waited for its objects' "
            "health, until healthy or failed.", ["site"], buckets=WAIT_BUCKETS, registry=r)
        self.fetch_errors = prometheus_client.Counter(
            "reconciler_fetch_errors", "Fetches of the branch that failed.", ["site"],
            registry=r)
        self.last_fetch = prometheus_client.Gauge(
            "reconciler_last_fetch_timestamp_seconds", "When the branch was last fetched "
            "successfully (Unix time).", ["site"], registry=r)
        self.last_sync = prometheus_client.Gauge(
            "reconciler_last_successful_sync_timestamp_seconds", "When a pass last ended "
            "ok: the site holds the intent in force (Unix time).", ["site"], registry=r)
        self.degraded = prometheus_client.Gauge(
            "reconciler_site_degraded", "1 while the site's passes fail in a row (a Git "
            "remote or API server fault, a bad revision; `reconciler status` says why and "
            "since when), 0 after a pass that ended ok or refused.", ["site"], registry=r)
        self.webhooks = prometheus_client.Counter(
            "reconciler_webhook_requests", "Webhook requests, by forge and result "
            "(triggered, ignored, unauthorized, bad_request).", ["forge", "result"],
            registry=r)

    def render(self) -> bytes:
        """The exposition text of every metric."""
        return prometheus_client.generate_latest(self.registry)

    def count_webhook(self, forge: str, result: str) -> None:
        self.webhooks.labels(forge=forge, result=result).inc()

    def __call__(self, happening: observe.Happening) -> None:
        match happening:
            case observe.Fetched(site=site):
                self.last_fetch.labels(site=site).set(self._wall())
            case observe.FetchFailed(site=site):
                self.fetch_errors.labels(site=site).inc()
            case observe.Accepted(site=site):
                self.accepted.labels(site=site).inc()
            case observe.Refused(site=site):
                self.refused.labels(site=site).inc()
            case observe.Dropped(site=site, drops=drops):
                self.drops.labels(site=site).set(len(drops))
            case observe.WavesChanged(site=site, waves=waves):
                self._time_waves(site, waves)
            case observe.RolloutEnded(site=site, outcome=outcome, drift=drift,
                                      superseded_by=newer, shutdown=shutdown):
                if outcome is state.Outcome.ABORTED and newer:
                    self.aborts.labels(site=site).inc()
                if not drift or outcome is not state.Outcome.SUCCEEDED:
                    name = "interrupted" if shutdown else outcome.value.lower()
                    self.rollouts.labels(site=site, outcome=name).inc()
            case observe.PassEnded(site=site, result=result, accepted=accepted):
                self.passes.labels(site=site, result=result).inc()
                if result in ("ok", "refused", "failed"):  # aborted: says nothing (state.degrade)
                    self.degraded.labels(site=site).set(1 if result == "failed" else 0)
                if result == "ok":
                    self.last_sync.labels(site=site).set(self._wall())
                if accepted is not None:
                    self.intent.labels(site=site).info({
                        "intent_id": accepted.id, "commit": accepted.commit,
                        "sequence": "" if accepted.sequence is None else str(accepted.sequence)})

    def _time_waves(self, site: str, waves: Iterable[state.WaveRecord]) -> None:
        """Apply and wait durations from the waves' phase changes: APPLYING -> WAITING is
        an apply, WAITING -> HEALTHY or FAILED a wait."""
        now = self._clock()
        with self._lock:
            for record in waves:
                key = (site, record.wave)
                before = self._phases.get(key)
                if before is not None and before[0] is record.phase:
                    continue
                self._phases[key] = (record.phase, now)
                if before is None:
                    continue
                took = now - before[1]
                if before[0] is state.WavePhase.APPLYING and record.phase in (
                        state.WavePhase.WAITING, state.WavePhase.FAILED):
                    self.apply_seconds.labels(site=site).observe(took)
                elif before[0] is state.WavePhase.WAITING and record.phase in (
                        state.WavePhase.HEALTHY, state.WavePhase.FAILED):
                    self.wait_seconds.labels(site=site).observe(took)


class Probes:
    """Liveness and readiness, from the front halves' starts and ends (see the module doc)."""

    def __init__(self, *, expected: Iterable[str] = (), stuck_after: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # injected by tests
        self.stuck_after = stuck_after
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting = set(expected)  # sites whose first front half has not ended
        self._running: dict[str, float] = {}  # site -> when its front half started
        self._done: set[str] = set()  # sites whose first front half ended

    def __call__(self, happening: observe.Happening) -> None:
        with self._lock:
            match happening:
                case observe.PassStarted(site=site):
                    self._running[site] = self._clock()
                    if site not in self._done:
                        self._waiting.add(site)
                case observe.Evaluated(site=site):
                    self._running.pop(site, None)
                    self._waiting.discard(site)
                    self._done.add(site)

    def live(self) -> tuple[bool, str]:
        now = self._clock()
        with self._lock:
            stuck = sorted((site, now - began) for site, began in self._running.items()
                           if now - began > self.stuck_after)
        if stuck:
            return False, "; ".join(f"site {site}: a fetch and decide running for {took:.0f}s "
                                    f"(over {self.stuck_after:.0f}s)" for site, took in stuck)
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        with self._lock:
            waiting = sorted(self._waiting)
        if waiting:
            return False, "first pass not finished: " + ", ".join(waiting)
        return True, "ok"


def routes(*, metrics: Metrics, probes: Probes) -> dict[str, endpoints.Route]:
    """/metrics, /healthz, /readyz."""
    def serve_metrics(_request: endpoints.Request) -> endpoints.Response:
        return endpoints.Response(200, metrics.render(), CONTENT_TYPE)

    def probe(check: Callable[[], tuple[bool, str]]) -> Callable[
            [endpoints.Request], endpoints.Response]:
        def answer(_request: endpoints.Request) -> endpoints.Response:
            ok, text = check()
            return endpoints.Response.text(200 if ok else 503, text)
        return answer

    get = frozenset({"GET", "HEAD"})
    return {"/metrics": endpoints.Route(serve_metrics, get),
            "/healthz": endpoints.Route(probe(probes.live), get),
            "/readyz": endpoints.Route(probe(probes.ready), get)}
