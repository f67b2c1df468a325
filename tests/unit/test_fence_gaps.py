"""The fence without gaps (issue #12 item 6): sequences never go back, no id is accepted
twice, driven through the state record as the pipeline keeps it."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.repo import documents
from reconciler.site import fence, state

NOW = "2026-12-01T00:00:00.000000Z"


def intent(intent_id: str, sequence: int | None = None) -> documents.Intent:
    return documents.Intent(site="s", id=intent_id, sequence=sequence, description="",
                            health_timeout=60.0, prune=True,
                            location=documents.Location(file="sites/s/intent.yaml", document=0))


def offer(current: state.SiteState, offered: documents.Intent,
          commit: str = "c" * 40) -> tuple[state.SiteState, fence.Decision]:
    """One pass's fence and its record, as pipeline.evaluate() chains them."""
    decision = fence.decide(accepted=current.accepted, superseded=current.accepted_ids(),
                            highest_sequence=current.highest_sequence(), intent=offered,
                            manifests=[])
    if decision.verdict is fence.Verdict.ACCEPT:
        current = state.accept(current, intent=offered, commit=commit, drops=(), now=NOW)
    elif decision.verdict is fence.Verdict.REFUSE:
        current = state.refuse(current, intent=offered, commit=commit, reason=decision.reason,
                               now=NOW)
    return current, decision


def offers(*offered: documents.Intent) -> tuple[state.SiteState, list[fence.Verdict]]:
    current, verdicts = state.SiteState(site="s"), []
    for one in offered:
        current, decision = offer(current, one)
        verdicts.append(decision.verdict)
    return current, verdicts


A, R = fence.Verdict.ACCEPT, fence.Verdict.REFUSE


def test_seq_5_then_no_sequence_then_seq_2_accepts_only_the_first():
    """Seq 5, then an intent without a sequence, then seq 2: both later ones are refused."""
    current, verdicts = offers(intent("i-5", 5), intent("i-none"), intent("i-2", 2))
    assert verdicts == [A, R, R]
    assert current.accepted is not None and current.accepted.id == "i-5"
    assert current.highest_sequence() == 5


def test_seq_5_then_seq_2_is_refused():
    """A lower sequence under a new id is refused."""
    _, verdicts = offers(intent("i-5", 5), intent("i-2", 2))
    assert verdicts == [A, R]


def test_replays_of_ids_accepted_without_sequences_are_refused():
    """Ids A, B, C accepted in turn without sequences: a replay of A or of B is refused."""
    current, verdicts = offers(intent("a"), intent("b"), intent("c"), intent("a"), intent("b"))
    assert verdicts == [A, A, A, R, R]
    assert current.accepted is not None and current.accepted.id == "c"
    assert current.accepted_ids() == {"a", "b", "c"}


def test_an_id_accepted_long_ago_is_refused_past_the_history_limit():
    """An id accepted, superseded, then pushed out of the history by HISTORY_LIMIT newer
    intents (accepted and refused ones) is still refused when replayed."""
    current, _ = offers(intent("old"), intent("next"))
    for n in range(state.HISTORY_LIMIT + 5):
        current, _ = offer(current, intent(f"i-{n}"))
        current, _ = offer(current, intent("next"))  # refused entries fill the history too
    assert all(e.id != "old" for e in current.history)
    current, decision = offer(current, intent("old"))
    assert decision.verdict is R
    assert "superseded" in decision.reason


def test_the_highest_sequence_is_derived_from_a_record_written_before_the_rule():
    """A record that accepted seq 5 and then an intent without one (the old gap) still
    refuses seq 2, and accepts seq 6."""
    current = state.SiteState(site="s")
    for one in (intent("i-5", 5), intent("i-none")):
        current = state.accept(current, intent=one, commit="c" * 40, drops=(), now=NOW)
    assert current.highest_sequence() == 5
    _, refused = offer(current, intent("i-2", 2))
    _, accepted = offer(current, intent("i-6", 6))
    assert (refused.verdict, accepted.verdict) == (R, A)


def test_accepted_ids_and_highest_sequence_of_an_empty_record():
    """A site never synced has accepted nothing and seen no sequence."""
    empty = state.SiteState(site="s")
    assert empty.accepted_ids() == frozenset()
    assert empty.highest_sequence() is None


def test_refused_intents_count_neither_as_accepted_ids_nor_sequences():
    """A refused intent's id and sequence are not what the site accepted."""
    current, verdicts = offers(intent("a", 5), intent("b", 3))
    assert verdicts == [A, R]
    assert current.accepted_ids() == {"a"}
    assert current.highest_sequence() == 5


def test_what_the_fence_reads_survives_a_round_trip_through_the_state_file():
    """accepted_ids() and highest_sequence() read the same from an encoded record."""
    current, _ = offers(intent("a", 1), intent("b", 2), intent("c", 3))
    current = dataclasses.replace(current, history=current.history[-1:])  # history trimmed
    back = state.decode(state.encode(current, where="s.json").decode(), where="s.json",
                        site="s")
    assert back.accepted_ids() == current.accepted_ids() == {"a", "b", "c"}
    assert back.highest_sequence() == 3


_IDS = st.sampled_from([f"i-{n}" for n in range(8)])
_OFFERS = st.lists(st.tuples(_IDS, st.none() | st.integers(min_value=0, max_value=8)),
                   max_size=30)


@settings(max_examples=300, deadline=None)
@given(_OFFERS)
def test_accepted_sequences_never_decrease_and_no_id_is_accepted_twice(
        offered: list[tuple[str, int | None]]) -> None:
    """For any run of offered intents: the accepted ones carry strictly increasing
    sequences once one carried a sequence, and no id is accepted twice."""
    current = state.SiteState(site="s")
    accepted: list[tuple[str, int | None]] = []
    for intent_id, sequence in offered:
        current, decision = offer(current, intent(intent_id, sequence))
        if decision.verdict is A:
            accepted.append((intent_id, sequence))
    ids = [intent_id for intent_id, _ in accepted]
    assert len(ids) == len(set(ids))
    seen: int | None = None
    for _, sequence in accepted:
        if seen is not None:
            assert sequence is not None and sequence > seen
        if sequence is not None:
            seen = sequence
