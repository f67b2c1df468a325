"""Property-based (hypothesis) tests of the fence and the state transitions together.

Random runs of whole passes, each chaining the transitions as pipeline.sync_once() does
(start, fetch, fence, accept or keep or refuse, open the rollout with its objects written
ahead, record what was applied, end the rollout, finish the pass), over random intents
(ids from a small pool, sequences or none), random object sets and random outcomes. After
every pass the record must agree with itself, round-trip through its schema-checked JSON,
and keep the guarantees: the accepted intent never goes back, no id is accepted twice,
and every object a rollout was about to apply is known to the inventory until a
successful rollout of a later intent prunes it.
"""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from reconciler import cluster
from reconciler.repo import documents
from reconciler.site import fence, inventory, state

SITE = "s"
NOW = "2026-12-01T00:00:00.000000Z"
IDS = [f"intent-{n}" for n in range(6)]
NAMES = [f"cm-{n}" for n in range(5)]


def intent(intent_id: str, sequence: int | None) -> documents.Intent:
    return documents.Intent(site=SITE, id=intent_id, sequence=sequence, description="",
                            health_timeout=60.0, prune=True,
                            location=documents.Location(file=f"sites/{SITE}/intent.yaml",
                                                        document=0))


def ref(name: str) -> cluster.ObjectRef:
    return cluster.ObjectRef("v1", "ConfigMap", "app", name)


class Passes(RuleBasedStateMachine):
    """One site's record through random whole passes."""

    def __init__(self) -> None:
        super().__init__()
        self.current = state.SiteState(site=SITE)
        self.commits = 0
        self.accepted_ids: list[str] = []  # in the order they were accepted
        self.sequences: list[int] = []  # of the accepted intents that had one
        self.maybe_live: set[str] = set()  # inventory ids a rollout may have created

    @rule(offered_id=st.sampled_from(IDS), sequence=st.none() | st.integers(0, 8),
          objects=st.sets(st.sampled_from(NAMES)), applied=st.integers(0, 5),
          outcome=st.sampled_from([state.Outcome.SUCCEEDED, state.Outcome.FAILED,
                                   state.Outcome.ABORTED]))
    def a_pass(self, offered_id: str, sequence: int | None, objects: set[str], applied: int,
               outcome: state.Outcome) -> None:
        """One pass: the fence decides; an accepted or kept intent rolls out."""
        self.commits += 1
        commit = f"{self.commits:040x}"
        current = state.start_sync(self.current, source=state.SourceRecord(
            url="https://git.example.com/fleet.git", branch="main"), now=NOW)
        current = state.record_fetch(current, head=commit)
        offered = intent(offered_id, sequence)
        decision = fence.decide(accepted=current.accepted, superseded=current.accepted_ids(),
                                highest_sequence=current.highest_sequence(),
                                intent=offered, manifests=[])
        if decision.verdict is fence.Verdict.REFUSE:
            current = state.refuse(current, intent=offered, commit=commit,
                                   reason=decision.reason, now=NOW)
            self.current = state.finish_sync(current, commit=commit, result="refused",
                                             message=decision.reason, verdict="refuse",
                                             now=NOW)
            return
        if decision.verdict is fence.Verdict.ACCEPT:
            current = state.accept(current, intent=offered, commit=commit, drops=(), now=NOW)
            self.accepted_ids.append(offered_id)
            if sequence is not None:
                self.sequences.append(sequence)
        else:
            current = state.keep(current, drops=())
        intent_id = decision.intent_id
        opened = state.Opened(intent_id=intent_id, commit=commit, started_at=NOW)
        order = sorted(objects)
        current = state.start_rollout(current, intent_id=intent_id, commit=commit, waves=(),
                                      now=NOW)
        current = state.record_pending(current, intent_id=intent_id, now=NOW,
                                       objects=[(ref(n), 0) for n in order])
        # Written ahead: every object about to be applied is known before any apply.
        known = {e.id for e in current.inventory}
        assert {ref(n).inventory_id for n in order} <= known
        done = order if outcome is state.Outcome.SUCCEEDED else order[:applied]
        self.maybe_live |= {ref(n).inventory_id for n in order[:applied + 1]}
        results = [inventory.ObjectResult(ref=ref(n), change=cluster.Change.CREATED,
                                          resource_version="1", intent_id=intent_id)
                   for n in done]
        keep_only = None
        if outcome is state.Outcome.SUCCEEDED:
            applied_ids = inventory.applied_ids(results)
            stale = inventory.stale(current.inventory, applied=applied_ids, held=())
            deleted = [inventory.ObjectResult(ref=ref(e.name), change=cluster.Change.DELETED,
                                              resource_version=None, intent_id=e.intent_id)
                       for e in stale]
            results += deleted
            keep_only = applied_ids
            self.maybe_live = set(applied_ids)
        current = state.record_inventory(current, results=results, keep_only=keep_only,
                                         now=NOW)
        current = state.end_rollout(current, rollout=opened, phase=outcome,
                                    message="" if outcome is state.Outcome.SUCCEEDED
                                    else f"{outcome.value.lower()} in the test",
                                    waves=(), superseded_by=None, now=NOW)
        result = {state.Outcome.SUCCEEDED: "ok", state.Outcome.FAILED: "failed",
                  state.Outcome.ABORTED: "aborted"}[outcome]
        if outcome is state.Outcome.FAILED:
            current = state.record_error(current, stage="apply", message="failed in the test",
                                         commit=commit, now=NOW)
        self.current = state.finish_sync(
            current, commit=commit, result=result, verdict=decision.verdict.value, now=NOW,
            message="failed in the test" if outcome is state.Outcome.FAILED else "",
            changes=[r.change for r in results], intent_id=intent_id)

    @invariant()
    def agrees_with_itself(self) -> None:
        """The last sync, the rollout record and the history never contradict."""
        assert state.problems(self.current) == []

    @invariant()
    def round_trips_through_its_schema(self) -> None:
        """Every record the transitions make is valid against the schema and reads back
        the same."""
        text = state.encode(self.current, where="test").decode()
        assert state.decode(text, where="test", site=SITE) == self.current

    @invariant()
    def the_accepted_intent_never_goes_back(self) -> None:
        """No id accepted twice; sequences strictly increase; the record says the same."""
        assert len(self.accepted_ids) == len(set(self.accepted_ids))
        assert self.sequences == sorted(set(self.sequences))
        if self.accepted_ids:
            assert self.current.accepted is not None
            assert self.current.accepted.id == self.accepted_ids[-1]
            assert set(self.accepted_ids[:-1]) <= set(self.current.accepted_ids())

    @invariant()
    def no_object_is_forgotten(self) -> None:
        """Every object a rollout may have created since the last successful one is in
        the inventory, so a later success can prune it."""
        assert self.maybe_live <= {e.id for e in self.current.inventory}


TestPasses = Passes.TestCase
TestPasses.settings = settings(max_examples=150, stateful_step_count=12, deadline=None,
                               suppress_health_check=[HealthCheck.too_slow])


def test_a_record_with_pending_entries_round_trips() -> None:
    """A pending entry survives encode and decode with its flag."""
    current = state.record_pending(state.SiteState(site=SITE), intent_id="intent-1", now=NOW,
                                   objects=[(ref("a"), 2)])
    back = state.decode(state.encode(current, where="t").decode(), where="t", site=SITE)
    (entry,) = back.inventory
    assert entry.pending and entry.wave == 2 and entry.intent_id == "intent-1"
    assert dataclasses.replace(entry, pending=False) != entry
