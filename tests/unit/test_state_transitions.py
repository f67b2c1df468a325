"""The pure SiteState -> SiteState transitions the pipeline records through, and the
consistency check that every injected-failure test relies on."""

from __future__ import annotations

import dataclasses

from reconciler import cluster
from reconciler.repo import documents
from reconciler.site import inventory, state

NOW = "2026-12-01T00:00:00.000000Z"
LATER = "2026-12-01T00:05:00.000000Z"
Out, W = state.Outcome, state.WavePhase


def intent(intent_id: str, sequence: int | None = None) -> documents.Intent:
    return documents.Intent(site="s", id=intent_id, sequence=sequence, description="",
                            health_timeout=60.0, prune=True,
                            location=documents.Location(file="sites/s/intent.yaml", document=0))


def accepted(current: state.SiteState, intent_id: str, sequence: int | None = None,
             now: str = NOW) -> state.SiteState:
    """A pass starts and accepts `intent_id`, as the pipeline's front half records it."""
    current = state.start_sync(current, source=state.SourceRecord(url="u", branch="main"),
                               now=now)
    return state.accept(current, intent=intent(intent_id, sequence), commit="a" * 40,
                        drops=(), now=now)


def opened(intent_id: str, now: str = NOW) -> state.Opened:
    return state.Opened(intent_id=intent_id, commit="a" * 40, started_at=now)


def rolled_out(intent_id: str) -> state.SiteState:
    """A site whose intent `intent_id` rolled out successfully."""
    s = accepted(state.SiteState(site="s"), intent_id)
    s = state.start_rollout(s, intent_id=intent_id, commit="a" * 40, waves=(), now=NOW)
    s = state.end_rollout(s, rollout=opened(intent_id), phase=Out.SUCCEEDED, message="",
                          waves=(), superseded_by=None, now=NOW)
    return state.finish_sync(s, commit="a" * 40, result="ok", message="", verdict="accept",
                             now=NOW, intent_id=intent_id)


def result(name: str, change: cluster.Change, intent_id: str | None = "i-1"
           ) -> inventory.ObjectResult:
    return inventory.ObjectResult(ref=cluster.ObjectRef("v1", "ConfigMap", "ns", name),
                                  change=change, resource_version="7", intent_id=intent_id,
                                  wave=10)


def test_first_accept_records_the_intent_pending():
    """The first acceptance sets the accepted intent and a Pending history entry."""
    s = accepted(state.SiteState(site="s"), "i-1", 1)
    assert s.accepted == state.fence.Accepted(id="i-1", sequence=1, commit="a" * 40,
                                              accepted_at=NOW)
    assert [(h.id, h.outcome) for h in s.history] == [("i-1", Out.PENDING)]
    assert state.problems(s) == []


def test_accept_aborts_the_running_rollout_of_the_previous_intent():
    """Accepting over a running rollout ends it and its history entry Aborted (superseded)."""
    s = accepted(state.SiteState(site="s"), "i-1")
    s = state.start_rollout(s, intent_id="i-1", commit="a" * 40, waves=(), now=NOW)
    s = accepted(s, "i-2", now=LATER)
    assert s.rollout is not None and s.rollout.phase is Out.ABORTED
    assert s.rollout.superseded_by == "i-2" and s.rollout.finished_at == LATER
    old = s.history_entry("i-1")
    assert old is not None and old.outcome is Out.ABORTED
    assert old.message == "Aborted (superseded by i-2)"
    assert s.superseded_ids() == {"i-1"}
    assert state.problems(s) == []


def test_accept_over_a_finished_rollout_keeps_its_outcome():
    """A previous intent that succeeded stays Succeeded, only marked superseded."""
    s = accepted(rolled_out("i-1"), "i-2")
    old = s.history_entry("i-1")
    assert old is not None and old.outcome is Out.SUCCEEDED and old.superseded_by == "i-2"
    assert s.rollout is not None and s.rollout.phase is Out.SUCCEEDED
    assert state.problems(s) == []


def test_accept_over_a_pending_intent_ends_it_aborted():
    """An intent accepted and superseded before its rollout began ends Aborted."""
    s = accepted(accepted(state.SiteState(site="s"), "i-1"), "i-2")
    old = s.history_entry("i-1")
    assert old is not None and old.outcome is Out.ABORTED


def test_refuse_records_history_and_keeps_the_accepted_intent():
    """A refused intent enters the history as Refused; the accepted one stays in force."""
    s = state.refuse(rolled_out("i-1"), intent=intent("old"), commit="b" * 40,
                     reason="stale", now=NOW)
    assert s.accepted is not None and s.accepted.id == "i-1"
    assert (s.history[-1].id, s.history[-1].outcome, s.history[-1].message) == \
        ("old", Out.REFUSED, "stale")
    assert state.problems(s) == []


def test_start_rollout_of_an_intent_no_longer_accepted_changes_nothing():
    """A plan taken just before a newer acceptance cannot reopen what the acceptance
    closed: starting its rollout leaves the record as it is."""
    s = accepted(accepted(state.SiteState(site="s"), "i-1"), "i-2")
    assert state.start_rollout(s, intent_id="i-1", commit="a" * 40, waves=(), now=LATER) == s
    assert state.problems(s) == []


def test_record_waves_ignores_another_intents_rollout():
    """Progress of a rollout no longer recorded (superseded meanwhile) changes nothing."""
    s = state.start_rollout(accepted(state.SiteState(site="s"), "i-1"), intent_id="i-1",
                            commit="a" * 40, waves=(), now=NOW)
    waves = (state.WaveRecord(wave=0, phase=W.HEALTHY),)
    recorded = state.record_waves(s, rollout=opened("i-1"), waves=waves).rollout
    assert recorded is not None and recorded.waves == waves
    assert state.record_waves(s, rollout=opened("other"), waves=waves) == s
    assert state.record_waves(s, rollout=opened("i-1", LATER), waves=waves) == s


def test_record_inventory_adds_applied_removes_deleted_and_skips_crds():
    """Applied objects are put in with their version and wave; deleted ones and shared
    CRDs are not in the inventory."""
    s = state.record_inventory(state.SiteState(site="s"), results=[
        result("a", cluster.Change.CREATED), result("b", cluster.Change.UNCHANGED),
        result("crd", cluster.Change.CREATED, intent_id=None)], keep_only=None, now=NOW)
    assert [(e.name, e.resource_version, e.wave) for e in s.inventory] == \
        [("a", "7", 10), ("b", "7", 10)]
    s = state.record_inventory(s, results=[result("a", cluster.Change.DELETED)],
                               keep_only=None, now=LATER)
    assert [e.name for e in s.inventory] == ["b"]


def test_record_inventory_with_keep_only_drops_the_rest():
    """After a successful prune only the applied and held ids stay."""
    s = state.record_inventory(state.SiteState(site="s"), results=[
        result("a", cluster.Change.CREATED), result("b", cluster.Change.CREATED)],
        keep_only=None, now=NOW)
    keep = frozenset({result("b", cluster.Change.CREATED).ref.inventory_id})
    s = state.record_inventory(s, results=[], keep_only=keep, now=NOW)
    assert [e.name for e in s.inventory] == ["b"]


def test_end_rollout_sets_the_same_phase_on_record_and_history():
    """A failed rollout is Failed in its record and in its history entry, with the message."""
    s = state.start_rollout(accepted(state.SiteState(site="s"), "i-1"), intent_id="i-1",
                            commit="a" * 40, waves=(), now=NOW)
    s = state.end_rollout(s, rollout=opened("i-1"), phase=Out.FAILED, message="wave 0 failed",
                          waves=(), superseded_by=None, now=LATER)
    entry = s.history_entry("i-1")
    assert s.rollout is not None and (s.rollout.phase, s.rollout.finished_at) == \
        (Out.FAILED, LATER)
    assert entry is not None and (entry.outcome, entry.message) == (Out.FAILED, "wave 0 failed")


def test_end_rollout_for_shutdown_stays_open():
    """A rollout stopped for shutdown stays Progressing, with no finish time."""
    s = state.start_rollout(accepted(state.SiteState(site="s"), "i-1"), intent_id="i-1",
                            commit="a" * 40, waves=(), now=NOW)
    s = state.end_rollout(s, rollout=opened("i-1"), phase=Out.PROGRESSING, message="interrupted",
                          waves=(), superseded_by=None, now=LATER)
    assert s.rollout is not None and s.rollout.finished_at is None
    assert s.history_entry("i-1").outcome is Out.PROGRESSING  # type: ignore[union-attr]


def test_end_rollout_of_a_superseded_intent_keeps_what_accept_wrote():
    """The acceptance of a newer intent closed the old entry; ending it changes only waves."""
    s = state.start_rollout(accepted(state.SiteState(site="s"), "i-1"), intent_id="i-1",
                            commit="a" * 40, waves=(), now=NOW)
    s = accepted(s, "i-2")
    waves = (state.WaveRecord(wave=0, phase=W.APPLYING),)
    ended = state.end_rollout(s, rollout=opened("i-1"), phase=Out.ABORTED, message="aborted",
                              waves=waves, superseded_by="i-2", now=LATER)
    assert ended.rollout is not None and ended.rollout.waves == waves
    assert ended.rollout.message == "Aborted (superseded by i-2)"
    assert ended.history == s.history
    assert state.problems(ended) == []


def test_a_rollout_that_succeeds_after_a_newer_acceptance_stays_superseded():
    """A rollout that ends Succeeded after a newer intent's acceptance closed its record
    keeps the record closed (Aborted, superseded); only its waves move."""
    s = state.start_rollout(accepted(state.SiteState(site="s"), "i-1"), intent_id="i-1",
                            commit="a" * 40, waves=(), now=NOW)
    s = accepted(s, "i-2")
    waves = (state.WaveRecord(wave=0, phase=W.HEALTHY),)
    ended = state.end_rollout(s, rollout=opened("i-1"), phase=Out.SUCCEEDED, message="",
                              waves=waves, superseded_by=None, now=LATER)
    assert ended.rollout is not None
    assert (ended.rollout.phase, ended.rollout.superseded_by) == (Out.ABORTED, "i-2")
    assert ended.rollout.waves == waves and ended.history == s.history


def test_an_abort_for_an_acceptance_not_yet_recorded_leaves_the_rollout_open():
    """A rollout aborted for a newer intent whose acceptance is not on disk (yet) stays
    Progressing, not superseded: the acceptance closes it, or the next pass resumes it."""
    s = state.start_rollout(accepted(state.SiteState(site="s"), "i-1"), intent_id="i-1",
                            commit="a" * 40, waves=(), now=NOW)
    ended = state.end_rollout(s, rollout=opened("i-1"), phase=Out.ABORTED,
                              message="aborted (superseded by i-2)", waves=(),
                              superseded_by="i-2", now=LATER)
    assert ended.rollout is not None
    assert (ended.rollout.phase, ended.rollout.superseded_by) == (Out.PROGRESSING, None)
    assert ended.history_entry("i-1").outcome is Out.PROGRESSING  # type: ignore[union-attr]
    assert state.problems(ended) == []
    closed = accepted(ended, "i-2", now=LATER)
    assert closed.rollout is not None and closed.rollout.phase is Out.ABORTED
    assert state.problems(closed) == []


def test_end_rollout_leaves_a_record_it_did_not_open_alone():
    """A pass ends only the rollout record it opened (intent, commit and start time)."""
    s = rolled_out("i-1")
    assert state.end_rollout(s, rollout=opened("i-1", LATER), phase=Out.FAILED, message="x",
                             waves=(), superseded_by=None, now=LATER) == s


def test_a_pass_is_not_ok_when_a_newer_intent_was_accepted_before_it_ended():
    """finish_sync turns `ok` into `aborted` when the pass's intent is no longer accepted."""
    s = accepted(state.SiteState(site="s"), "i-2")
    done = state.finish_sync(s, commit="a" * 40, result="ok", message="", verdict="accept",
                             now=LATER, intent_id="i-1")
    assert done.last_sync is not None and done.last_sync.result == "aborted"
    assert "superseded by i-2" in done.last_sync.message
    kept = state.finish_sync(s, commit="a" * 40, result="ok", message="", verdict="keep",
                             now=LATER, intent_id="i-2")
    assert kept.last_sync is not None and kept.last_sync.result == "ok"


def test_a_refusal_at_the_commit_an_intent_was_accepted_at_keeps_it_superseded():
    """Refusing a superseded intent seen again at its old commit (history rewound) keeps
    its accepted entry, so it stays among the superseded ids."""
    s = accepted(accepted(state.SiteState(site="s"), "i-1"), "i-2")
    assert "i-1" in s.superseded_ids()
    refused = state.refuse(s, intent=intent("i-1"), commit="a" * 40, reason="replay", now=LATER)
    assert "i-1" in refused.superseded_ids()
    other = state.refuse(s, intent=intent("i-1"), commit="c" * 40, reason="replay", now=LATER)
    assert other.history[-1].outcome is Out.REFUSED and "i-1" in other.superseded_ids()


def test_finish_sync_counts_changes():
    """The last sync counts what the pass did to objects, by change."""
    C = cluster.Change
    s = state.finish_sync(state.start_sync(state.SiteState(site="s"), source=state.SourceRecord(
        url="u", branch="main"), now=NOW), commit="c" * 40, result="failed", message="m",
        verdict="keep", now=LATER, dropped=2,
        changes=[C.CREATED, C.CREATED, C.CONFIGURED, C.UNCHANGED, C.DELETED])
    sync = s.last_sync
    assert sync is not None
    assert (sync.started_at, sync.finished_at, sync.result, sync.message) == \
        (NOW, LATER, "failed", "m")
    assert (sync.created, sync.configured, sync.unchanged, sync.pruned, sync.dropped) == \
        (2, 1, 1, 1, 2)


def test_record_error_keeps_the_last_few():
    """Errors beyond the limit push the oldest out."""
    s = state.SiteState(site="s")
    for number in range(state.ERRORS_LIMIT + 3):
        s = state.record_error(s, stage="fetch", message=str(number), commit=None, now=NOW)
    assert len(s.errors) == state.ERRORS_LIMIT and s.errors[-1].message == str(
        state.ERRORS_LIMIT + 2)


def test_problems_finds_each_contradiction():
    """The consistency check names an ok sync over a failed rollout, a rollout whose
    history disagrees, and a failure nobody recorded."""
    good = rolled_out("i-1")
    assert state.problems(good) == []
    failed_rollout = dataclasses.replace(good, rollout=dataclasses.replace(
        good.rollout, phase=Out.FAILED))  # type: ignore[type-var]
    found = state.problems(failed_rollout)
    assert any("last sync ok but the rollout" in p for p in found)
    assert any("history entry says Succeeded" in p for p in found)
    silent = dataclasses.replace(good, last_sync=dataclasses.replace(
        good.last_sync, result="failed", message="boom"))  # type: ignore[type-var]
    assert any("neither the rollout nor the errors" in p for p in state.problems(silent))
    recorded = state.record_error(silent, stage="apply", message="boom", commit="a" * 40,
                                  now=NOW)
    assert state.problems(recorded) == []
