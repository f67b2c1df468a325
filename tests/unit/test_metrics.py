"""Metrics, probes and JSON log lines of `run`: scraped over real HTTP and parsed with
prometheus_client's own parser, after real passes through real Git and our Cluster port."""

from __future__ import annotations

import contextvars
import dataclasses
import http.client
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.site import endpoints, logs, metrics, observe, state
from tests import gitrepo, sites

SITE = sites.SITE


@dataclasses.dataclass
class Scraped:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def named(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for (n, labels) in self.samples if n == name]


class Endpoint:
    """metrics.routes() served on a free loopback port."""

    def __init__(self, meter: metrics.Metrics, probes: metrics.Probes) -> None:
        self.server = endpoints.Server(routes=metrics.routes(metrics=meter, probes=probes),
                                       port=0, host="127.0.0.1").start()

    def get(self, path: str) -> tuple[int, str, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.getheader("Content-Type") or "", \
                response.read().decode()
        finally:
            conn.close()

    def scrape(self) -> Scraped:
        status, content_type, text = self.get("/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        return Scraped({(s.name, frozenset(s.labels.items())): s.value
                        for family in text_string_to_metric_families(text)
                        for s in family.samples})


@pytest.fixture
def served() -> Iterator[tuple[metrics.Metrics, metrics.Probes, Endpoint]]:
    meter, probes = metrics.Metrics(), metrics.Probes(expected=[SITE])
    endpoint = Endpoint(meter, probes)
    yield meter, probes, endpoint
    endpoint.server.stop()


def test_a_sync_shows_in_the_metrics(tmp_path: Path, remote: gitrepo.GitRemote,
                                     served: tuple[metrics.Metrics, metrics.Probes, Endpoint]
                                     ) -> None:
    """After a real pass: the accepted intent as info, one succeeded rollout, an apply and a
    wait duration per wave, the last successful sync and fetch, no fetch errors."""
    meter, probes, endpoint = served
    env = sites.Env(tmp_path, remote)
    result = env.sync(observer=observe.fanout([meter, probes]))
    assert result.ok, result.message
    scraped = endpoint.scrape()
    accepted = env.store.load().accepted
    assert accepted is not None
    assert scraped.named("reconciler_intent_info") == [{
        "site": SITE, "intent_id": accepted.id, "commit": accepted.commit,
        "sequence": str(accepted.sequence)}]
    assert scraped.value("reconciler_rollouts_total", site=SITE, outcome="succeeded") == 1
    assert scraped.value("reconciler_intents_accepted_total", site=SITE) == 1
    assert scraped.value("reconciler_passes_total", site=SITE, result="ok") == 1
    waves = len(env.store.load().rollout.waves)  # type: ignore[union-attr]
    assert waves >= 3
    assert scraped.value("reconciler_apply_duration_seconds_count", site=SITE) == waves
    assert scraped.value("reconciler_wait_duration_seconds_count", site=SITE) == waves
    assert (scraped.value("reconciler_last_successful_sync_timestamp_seconds", site=SITE)
            or 0) > 1e9
    assert (scraped.value("reconciler_last_fetch_timestamp_seconds", site=SITE) or 0) > 1e9
    assert scraped.value("reconciler_dropped_manifests", site=SITE) == 0
    assert scraped.value("reconciler_fetch_errors_total", site=SITE) is None


def test_a_second_pass_is_a_drift_pass_not_a_rollout(
        tmp_path: Path, remote: gitrepo.GitRemote,
        served: tuple[metrics.Metrics, metrics.Probes, Endpoint]) -> None:
    """A pass over the intent already rolled out counts as a pass, not another rollout."""
    meter, probes, endpoint = served
    env = sites.Env(tmp_path, remote)
    for _ in range(2):
        assert env.sync(observer=observe.fanout([meter, probes])).ok
    scraped = endpoint.scrape()
    assert scraped.value("reconciler_rollouts_total", site=SITE, outcome="succeeded") == 1
    assert scraped.value("reconciler_passes_total", site=SITE, result="ok") == 2


def test_a_failed_fetch_counts_and_leaves_the_last_sync_alone(
        tmp_path: Path, served: tuple[metrics.Metrics, metrics.Probes, Endpoint]) -> None:
    """A fetch of a repository that is not there: one fetch error, a failed pass, no sync."""
    meter, probes, endpoint = served
    env = sites.Env(tmp_path, gitrepo.GitRemote(tmp_path / "git"))
    env.options = dataclasses.replace(env.options, url=str(tmp_path / "nowhere.git"))
    assert not env.sync(observer=observe.fanout([meter, probes])).ok
    scraped = endpoint.scrape()
    assert scraped.value("reconciler_fetch_errors_total", site=SITE) == 1
    assert scraped.value("reconciler_passes_total", site=SITE, result="failed") == 1
    assert scraped.value("reconciler_last_successful_sync_timestamp_seconds", site=SITE) is None
    assert probes.ready() == (True, "ok")  # a failed first pass is still a finished one


def test_an_aborted_rollout_counts_as_an_abort_and_a_rollout_outcome() -> None:
    """Superseded: an abort and an aborted rollout; stopped by shutdown: interrupted, no abort."""
    meter = metrics.Metrics()
    meter(observe.RolloutEnded(SITE, "a", "c1", state.Outcome.ABORTED, "x", drift=False,
                               superseded_by="b"))
    meter(observe.RolloutEnded(SITE, "b", "c2", state.Outcome.ABORTED, "x", drift=False,
                               shutdown=True))
    text = meter.render().decode()
    assert f'reconciler_aborts_total{{site="{SITE}"}} 1.0' in text
    assert f'reconciler_rollouts_total{{outcome="aborted",site="{SITE}"}} 1.0' in text
    assert f'reconciler_rollouts_total{{outcome="interrupted",site="{SITE}"}} 1.0' in text


def test_wave_durations_come_from_phase_changes() -> None:
    """APPLYING -> WAITING is an apply, WAITING -> HEALTHY a wait, timed by the clock."""
    now = [100.0]
    meter = metrics.Metrics(clock=lambda: now[0])

    def waves(*phases: state.WavePhase) -> observe.WavesChanged:
        return observe.WavesChanged(SITE, "i", tuple(state.WaveRecord(wave=w * 10, phase=p)
                                                     for w, p in enumerate(phases)))
    p = state.WavePhase
    meter(waves(p.APPLYING, p.PENDING))
    now[0] += 2
    meter(waves(p.WAITING, p.PENDING))
    now[0] += 30
    meter(waves(p.HEALTHY, p.PENDING))
    text = meter.render().decode()
    assert f'reconciler_apply_duration_seconds_sum{{site="{SITE}"}} 2.0' in text
    assert f'reconciler_wait_duration_seconds_sum{{site="{SITE}"}} 30.0' in text


def test_probes_over_http(served: tuple[metrics.Metrics, metrics.Probes, Endpoint]) -> None:
    """/readyz is 503 until every site's first front half ended, then 200; /healthz 200."""
    _, probes, endpoint = served
    assert endpoint.get("/healthz")[0] == 200
    status, _, text = endpoint.get("/readyz")
    assert status == 503 and SITE in text
    probes(observe.PassStarted(SITE))
    probes(observe.Evaluated(SITE))
    assert endpoint.get("/readyz")[0] == 200
    assert endpoint.get("/nothing")[0] == 404


def test_a_front_half_running_too_long_fails_liveness() -> None:
    """A fetch-and-decide still running after stuck_after fails /healthz, naming the site;
    a site that took over later counts for readiness until its first pass ends."""
    now = [0.0]
    probes = metrics.Probes(stuck_after=60, clock=lambda: now[0])
    assert probes.ready() == (True, "ok")
    probes(observe.PassStarted("edge-b"))
    assert probes.ready()[0] is False
    now[0] = 61
    live, why = probes.live()
    assert not live and "site edge-b" in why
    probes(observe.Evaluated("edge-b"))
    assert probes.live() == (True, "ok") and probes.ready() == (True, "ok")
    probes(observe.PassStarted("edge-b"))  # later passes do not make it unready again
    assert probes.ready() == (True, "ok")


def test_an_observer_error_never_reaches_the_pass(tmp_path: Path,
                                                  remote: gitrepo.GitRemote) -> None:
    """An observer that raises is logged; the pass ends as it would have."""
    def broken(_happening: observe.Happening) -> None:
        raise RuntimeError("boom")

    assert sites.Env(tmp_path, remote).sync(observer=broken).ok


def test_json_log_lines_carry_time_level_message_and_site() -> None:
    """--log-format json: one object per line, with the site the thread works for."""
    formatter = logs.JsonFormatter(default_site="fallback")
    record = logging.LogRecord("reconciler.x", logging.WARNING, __file__, 1, "hello %s",
                               ("world",), None)
    line = json.loads(contextvars.Context().run(formatter.format, record))  # no site set
    assert line["message"] == "hello world" and line["level"] == "warning"
    assert line["site"] == "fallback" and line["time"].endswith("Z")
    token = observe.SITE.set("edge-z")
    try:
        assert json.loads(formatter.format(record))["site"] == "edge-z"
    finally:
        observe.SITE.reset(token)


def test_a_site_suspended_at_start_is_ready(tmp_path: Path, remote: gitrepo.GitRemote) -> None:
    """A site suspended before the agent starts runs no pass, yet its replica is ready:
    it has read its state and decided, as `suspend` asks, to fetch nothing."""
    from reconciler.site import agent, control

    env = sites.Env(tmp_path, remote)
    channel = control.FileChannel(state_dir=env.store.state_dir, site=SITE)
    control.suspend(channel, by="ops", reason="maintenance", now=state.now())
    probes = metrics.Probes(expected=[SITE])
    running = agent.Agent(options=env.options, store=env.store, target=env.cluster,
                          interval=3600.0, watch_files=False, observer=probes,
                          control_channel=channel).start()
    try:
        for _ in range(100):
            if probes.ready()[0]:
                break
            threading.Event().wait(0.05)
        assert probes.ready() == (True, "ok")
        assert running.passes == 0 and not env.cluster.applied()
    finally:
        assert running.stop()
