"""Crash consistency (issue #12, item 10): `reconciler sync` killed with SIGKILL at points
spread over fetch, accept, apply, wait, prune and save, on both clusters; after each
restart the state parses, the accepted intent never went back, no write of a superseded
intent was handled after its successor's acceptance, the site converged, and no orphan
is left (tests/crash.py).

A CI-sized run: RECONCILER_CRASH_POINTS points per cluster (default 24 on the local
cluster, 12 on the real one). The full run, 200 points or more: benchmarks/crash.py.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from reconciler.localcluster import requestlog
from reconciler.site import state
from tests import crash
from tests.e2e.conftest import ClusterUnderTest

pytestmark = pytest.mark.e2e

DEFAULT_POINTS = {"local": 24, "real": 12}
MUST_HIT = ("apply", "wait", "prune", "save")


@pytest.mark.timeout(1800)  # RECONCILER_CRASH_POINTS can ask for many points
def test_sigkill_at_every_stage_leaves_a_consistent_site(any_cluster: ClusterUnderTest,
                                                          tmp_path: Path) -> None:
    """Killed anywhere in a pass, the site restarts to a parsable state whose accepted
    intent never went back, with no late write of a superseded intent, every object of
    the last intent live with its content, and no orphan; the kills hit apply, wait,
    prune and save."""
    count = crash.points_from_env(DEFAULT_POINTS.get(any_cluster.name, 12))
    with crash.harness(root=tmp_path / "crash", target=any_cluster) as run:
        report = run.run(count)
    print(report.table())
    stages = report.stages()
    print("stages no kill landed in:",
          [stage for stage in crash.REQUIRED_STAGES if not stages.get(stage)] or "none")
    assert len(report.points) == count
    assert not report.violations, report.table()
    missed = [stage for stage in MUST_HIT if not stages.get(stage)]
    assert not missed or count < 12, f"no kill landed in {missed}:\n{report.table()}"


def _history(*entries: tuple[str, int, float, str | None]) -> state.SiteState:
    """A record whose history holds (id, sequence, accepted at, superseded by) entries."""
    return state.SiteState(site=crash.SITE, history=tuple(
        state.HistoryEntry(id=i, sequence=seq, commit="0" * 40, outcome=state.Outcome.ABORTED,
                           accepted_at=state.to_rfc3339(datetime.datetime.fromtimestamp(
                               at, datetime.UTC)), superseded_by=by)
        for i, seq, at, by in entries))


def _write(intent_id: str, *, handled: float, dry_run: bool = False,
           status: int = 200) -> requestlog.RequestRecord:
    return requestlog.RequestRecord(
        time=handled - 5, handled=handled, verb="patch", patch_type="apply",
        path="/api/v1/namespaces/sfo-ran/configmaps/x", kind="ConfigMap",
        namespace="sfo-ran", name="x", intent_id=intent_id, dry_run=dry_run, status=status)


def test_late_write_check_judges_by_when_the_server_handled_the_write() -> None:
    """A successful write of a superseded intent handled after its successor's acceptance
    is a violation, though it arrived before; one handled before, a dry run, or a refused
    write is not."""
    record = _history(("b", 2, 1000.0, "c"), ("c", 3, 1010.0, None))
    assert len(crash.late_writes([_write("b", handled=1010.5)], record)) == 1
    assert crash.late_writes([_write("b", handled=1009.5), _write("c", handled=1020.0),
                              _write("b", handled=1011.0, dry_run=True),
                              _write("b", handled=1011.0, status=409)], record) == []


def test_fence_check_sees_an_accepted_intent_that_went_back() -> None:
    """A record whose highest sequence fell, or that forgot an id it accepted, went back."""
    before = _history(("b", 2, 1000.0, "c"), ("c", 3, 1010.0, None))
    after = _history(("b", 2, 1000.0, None))
    found = crash.went_back(before, after, "after the kill")
    assert any("sequence went from 3 to 2" in f for f in found), found
    assert any("'c'" in f for f in found), found
    assert crash.went_back(before, before, "after the kill") == []
