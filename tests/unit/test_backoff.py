"""The agent's backoff after failed passes, the Degraded record and its reports: the pure
pieces with injected randomness, and the agent through real Git with our Cluster port faked."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import cluster, contract, errors, kube
from reconciler.site import agent, metrics, observe, pipeline, report, state
from tests import fakes, gitrepo

SITE = "edge-sfo-01"
T0 = "2026-01-01T00:00:00Z"


def wait_for(what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.02)


# --- backoff_delay ---------------------------------------------------------------------


def test_backoff_doubles_from_one_second_per_failure() -> None:
    """With the jitter drawn at its top, the delay is 1s, 2s, 4s, 8s for 1 to 4 failures."""
    top = [agent.backoff_delay(n, rng=lambda: 1.0) for n in (1, 2, 3, 4)]
    assert top == [1.0, 2.0, 4.0, 8.0]


def test_backoff_is_capped() -> None:
    """However many failures, the delay never exceeds the cap (--max-backoff)."""
    assert agent.backoff_delay(40, cap=300.0, rng=lambda: 1.0) == 300.0
    assert agent.backoff_delay(10_000, cap=5.0, rng=lambda: 0.999) <= 5.0


def test_backoff_jitter_keeps_at_least_half_the_step() -> None:
    """Equal jitter: a draw of 0 gives half the step, never zero (no hot loop)."""
    assert agent.backoff_delay(3, rng=lambda: 0.0) == 2.0
    assert agent.backoff_delay(1, cap=0.1, rng=lambda: 0.0) == pytest.approx(0.05)


def test_backoff_jitter_spreads_between_half_and_whole_step() -> None:
    """Draws across [0, 1) land across [step/2, step)."""
    delays = [agent.backoff_delay(4, rng=lambda d=draw: d) for draw in (0.0, 0.25, 0.5, 0.75)]
    assert delays == [4.0, 5.0, 6.0, 7.0]


# --- the Degraded record ---------------------------------------------------------------


def failed_pass(current: state.SiteState, *, stage: str, message: str,
                at: str) -> state.SiteState:
    """A pass that starts at `at` and fails at `stage`, as the pipeline records one."""
    current = state.start_sync(current, source=state.SourceRecord(url="u", branch="main"),
                               now=at)
    current = state.record_error(current, stage=stage, message=message, commit=None, now=at)
    return state.finish_sync(current, commit=None, result="failed", message=message,
                             verdict=None, now=at)


def ended_pass(current: state.SiteState, *, result: str) -> state.SiteState:
    current = state.start_sync(current, source=state.SourceRecord(url="u", branch="main"),
                               now=T0)
    return state.finish_sync(current, commit=None, result=result, message="", verdict=None,
                             now=T0)


def test_failed_pass_degrades_the_site_with_stage_message_and_start() -> None:
    """The first failed pass records Degraded: since it began, its stage and its error."""
    current = failed_pass(state.SiteState(site=SITE), stage="fetch", message="fetch failed: x",
                          at=T0)
    assert current.degraded == state.Degraded(since=T0, stage="fetch",
                                              message="fetch failed: x", failures=1)


def test_failures_in_a_row_keep_the_first_start_and_count() -> None:
    """A second failure keeps `since` from the first, counts two, and says the last reason."""
    current = failed_pass(state.SiteState(site=SITE), stage="fetch", message="one", at=T0)
    current = failed_pass(current, stage="apply", message="two", at="2026-01-01T00:01:00Z")
    assert current.degraded == state.Degraded(since=T0, stage="apply", message="two",
                                              failures=2)


@pytest.mark.parametrize("result", ["ok", "refused"])
def test_good_or_refused_pass_clears_degraded(result: str) -> None:
    """A pass that ends ok or refused (the intent decided) clears Degraded."""
    current = failed_pass(state.SiteState(site=SITE), stage="fetch", message="x", at=T0)
    assert ended_pass(current, result=result).degraded is None


def test_aborted_pass_keeps_degraded_as_it_was() -> None:
    """An aborted pass says nothing about faults: Degraded stays as it was."""
    current = failed_pass(state.SiteState(site=SITE), stage="fetch", message="x", at=T0)
    assert ended_pass(current, result="aborted").degraded == current.degraded


def test_degraded_round_trips_through_the_state_file(tmp_path: Path) -> None:
    """The record is saved and loaded (schema-checked) with its Degraded field."""
    store = state.FileStateStore(state_dir=tmp_path, site=SITE)
    current = failed_pass(state.SiteState(site=SITE), stage="fetch", message="x", at=T0)
    with store.lock():
        store.save(current)
        assert store.load().degraded == current.degraded


def test_status_text_says_degraded_with_reason_and_count() -> None:
    """`reconciler status` prints a Degraded line: how many passes, the stage and error."""
    current = failed_pass(state.SiteState(site=SITE), stage="fetch", message="one", at=T0)
    current = failed_pass(current, stage="fetch", message="cannot reach x", at=T0)
    line = next(x for x in report.status_text(current).splitlines()
                if x.startswith("Degraded:"))
    assert "2 failed passes in a row" in line and "fetch: cannot reach x" in line
    assert "Degraded" not in report.status_text(ended_pass(current, result="ok"))


def test_degraded_metric_follows_pass_results() -> None:
    """reconciler_site_degraded is 1 after a failed pass, stays through an aborted one,
    and is 0 after a good one."""
    meter = metrics.Metrics()

    def value() -> float | None:
        return meter.registry.get_sample_value("reconciler_site_degraded", {"site": SITE})

    meter(observe.PassEnded(SITE, "failed", "x", stage="fetch"))
    assert value() == 1
    meter(observe.PassEnded(SITE, "aborted", "superseded"))
    assert value() == 1
    meter(observe.PassEnded(SITE, "ok", ""))
    assert value() == 0


# --- the agent -------------------------------------------------------------------------


class FlakyCluster(fakes.FakeCluster):
    """Every apply raises `broken` while it is set, as an API server in trouble answers."""

    def __init__(self) -> None:
        super().__init__()
        self.broken: errors.ClusterError | None = None

    def apply(self, obj: Mapping[str, Any], *, force: bool = False, dry_run: bool = False,
              field_manager: str = contract.SHARED_FIELD_MANAGER) -> cluster.Applied:
        if self.broken is not None:
            self.calls.append(("apply-refused", str(cluster.ObjectRef.of(obj))))
            raise self.broken
        return super().apply(obj, force=force, dry_run=dry_run, field_manager=field_manager)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[state.FileStateStore]:
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    with store.lock():
        yield store


def run_agent(*, url: str, store: state.FileStateStore, target: fakes.FakeCluster,
              tmp_path: Path) -> agent.Agent:
    """An agent that would poll only hourly: any quicker pass comes from the backoff."""
    options = pipeline.Options(url=url, site=SITE, cache_dir=tmp_path / "cache")
    return agent.Agent(options=options, store=store, target=target, interval=3600.0,
                       watch_files=False, max_backoff=0.2, rng=lambda: 0.5).start()


def test_failed_fetches_are_retried_on_the_backoff_and_recover_alone(
        remote: gitrepo.GitRemote, store: state.FileStateStore, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A remote that is gone is retried after the backoff, not the hourly poll; the site is
    Degraded at the fetch meanwhile, nothing is deleted, and once the remote is back the
    site converges with no trigger and Degraded clears."""
    caplog.set_level(logging.INFO)
    target = FlakyCluster()
    moved = remote.bare.with_name("gone.git")
    remote.bare.rename(moved)
    running = run_agent(url=remote.url, store=store, target=target, tmp_path=tmp_path)
    try:
        wait_for("three failed passes", lambda: running.failures >= 3)
        degraded = running.box.current.degraded
        assert degraded is not None and degraded.stage == "fetch"
        assert f"fetch of branch 'main' from {remote.url} failed" in degraded.message
        assert "next attempt in" in caplog.text
        moved.rename(remote.bare)
        wait_for("a good pass", lambda: running.box.current.last_sync is not None
                 and running.box.current.last_sync.result == "ok")
        assert running.box.current.degraded is None
        assert running.failures == 0
        assert target.deletes == []
    finally:
        running.stop()


def test_failed_rollout_is_retried_on_the_backoff_without_pruning(
        remote: gitrepo.GitRemote, store: state.FileStateStore, tmp_path: Path) -> None:
    """An API server refusing every apply fails the rollout; the worker brings the next pass
    forward to the backoff, the site is Degraded at the apply, nothing is deleted, and once
    the API answers again the site converges on its own."""
    target = FlakyCluster()
    target.broken = errors.ApplyError("ConfigMap/x/y apply failed: HTTP 500",
                                      retryable=False, status=500)
    running = run_agent(url=remote.url, store=store, target=target, tmp_path=tmp_path)
    try:
        wait_for("two failed rollouts", lambda: running.failures >= 2)
        degraded = running.box.current.degraded
        assert degraded is not None and degraded.stage == "apply"
        assert "HTTP 500" in degraded.message
        target.broken = None
        wait_for("a good pass", lambda: running.box.current.last_sync is not None
                 and running.box.current.last_sync.result == "ok")
        assert running.box.current.degraded is None
        assert target.deletes == []
        assert [c for c in target.calls if c[0] == "delete"] == []
    finally:
        running.stop()


@pytest.mark.parametrize("output", ["text", "json", "yaml"])
def test_status_command_reports_degraded(tmp_path: Path, output: str) -> None:
    """`reconciler status` shows Degraded with its stage, reason and start in every output,
    and exits 1 (the last sync failed)."""
    store = state.FileStateStore(state_dir=tmp_path, site=SITE)
    current = failed_pass(state.SiteState(site=SITE), stage="fetch",
                          message="fetch of branch 'main' from git://x/f.git failed: refused",
                          at=T0)
    with store.lock():
        store.save(current)
    done = subprocess.run([sys.executable, "-m", "reconciler", "status", "--state-dir",
                           str(tmp_path), "--site", SITE, "-o", output],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    if output == "text":
        assert ("Degraded:      since " in done.stdout and "(1 failed pass; " in done.stdout
                and "fetch: fetch of branch 'main' from git://x/f.git failed" in done.stdout)
        return
    data = json.loads(done.stdout) if output == "json" else yaml.safe_load(done.stdout)
    assert data["degraded"] == {"since": T0, "stage": "fetch", "failures": 1,
                                "message": current.degraded.message if current.degraded
                                else ""}


# --- Retry-After -----------------------------------------------------------------------


@pytest.mark.parametrize(("status", "header", "expected"), [
    (429, "7", 7.0), (503, "2", 2.0), (429, None, None),
    (429, "Wed, 21 Oct 2026 07:28:00 GMT", None), (429, "-3", None)])
def test_retry_after_is_carried_on_the_error(status: int, header: str | None,
                                             expected: float | None) -> None:
    """A 429's or 503's Retry-After in seconds is kept on the ClusterError; an HTTP date,
    a negative or no header keeps nothing. The error stays retryable and names the object."""
    body = {"kind": "Status", "message": "Too many requests, please try again later."}
    error = kube.KubeCluster._fail(status, kube._with_retry_after(body, header),
                                   what="ConfigMap/ns/a", action="apply")
    assert error.retry_after == expected
    assert error.retryable
    assert str(error).startswith("ConfigMap/ns/a apply failed: Too many requests")


def test_retry_after_with_no_body_still_counts() -> None:
    """A 429 with an empty body still carries its Retry-After."""
    error = kube.KubeCluster._fail(429, kube._with_retry_after(None, "4"),
                                   what="ConfigMap/ns/a", action="apply")
    assert error.retry_after == 4.0 and "HTTP 429" in str(error)
