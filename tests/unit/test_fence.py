"""The intent fence: which intent is in force, and which manifests may reach the cluster."""

from __future__ import annotations

from typing import Any

from reconciler import contract
from reconciler.repo import documents
from reconciler.site import fence

LOC = documents.Location(file="sites/edge-a/intent.yaml", document=0, line=1)


def intent(intent_id: str, sequence: int | None = None) -> documents.Intent:
    return documents.Intent(site="edge-a", id=intent_id, sequence=sequence, description="",
                         health_timeout=600.0, prune=True, location=LOC)


def accepted(intent_id: str, sequence: int | None = None) -> fence.Accepted:
    return fence.Accepted(id=intent_id, sequence=sequence, commit="a" * 40,
                          accepted_at="2026-11-27T12:00:00.000000Z")


def manifest(name: str, intent_id: str | None, *, kind: str = "ConfigMap",
             namespace: str | None = "ran", document: int = 0) -> documents.Manifest:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if intent_id is not None:
        metadata["annotations"] = {contract.ANNOTATION_INTENT_ID: intent_id}
    location = documents.Location(file=f"sites/edge-a/manifests/{name}.yaml", document=document,
                               line=1)
    return documents.Manifest(location=location,
                           body={"apiVersion": "v1", "kind": kind, "metadata": metadata})


def test_first_intent_is_accepted():
    """A site with nothing accepted accepts the intent it reads."""
    decision = fence.decide(accepted=None, superseded=(), intent=intent("a", 1),
                            manifests=[manifest("x", "a")])
    assert decision.verdict is fence.Verdict.ACCEPT
    assert decision.intent_id == "a"
    assert [m.name for m in decision.apply] == ["x"]


def test_same_intent_is_kept():
    """The accepted intent read again is kept, and its manifests are applied to converge."""
    decision = fence.decide(accepted=accepted("a", 1), superseded=(), intent=intent("a", 1),
                            manifests=[manifest("x", "a")])
    assert decision.verdict is fence.Verdict.KEEP
    assert [m.name for m in decision.apply] == ["x"]


def test_new_intent_with_higher_sequence_is_accepted():
    """A different id with a higher sequence supersedes the accepted intent."""
    decision = fence.decide(accepted=accepted("a", 1), superseded=(), intent=intent("b", 2),
                            manifests=[])
    assert decision.verdict is fence.Verdict.ACCEPT
    assert "supersedes 'a'" in decision.reason


def test_lower_sequence_is_refused():
    """A different id with a lower sequence is refused and the accepted one stays in force."""
    decision = fence.decide(accepted=accepted("b", 5), superseded=(), intent=intent("a", 4),
                            manifests=[manifest("x", "a")])
    assert decision.verdict is fence.Verdict.REFUSE
    assert decision.intent_id == "b"
    assert decision.apply == ()
    assert "sequence 4, not higher than 5" in decision.reason


def test_equal_sequence_is_refused():
    """An equal sequence under another id is refused: sequences are strictly monotonic."""
    decision = fence.decide(accepted=accepted("b", 5), superseded=(), intent=intent("c", 5),
                            manifests=[])
    assert decision.verdict is fence.Verdict.REFUSE


def test_a_first_sequence_is_accepted_over_an_intent_without_one():
    """An intent with a sequence supersedes one without: the site starts counting there."""
    decision = fence.decide(accepted=accepted("a"), superseded=(), intent=intent("b", 1),
                            manifests=[])
    assert decision.verdict is fence.Verdict.ACCEPT


def test_an_intent_without_a_sequence_is_refused_once_a_site_has_seen_one():
    """After sequence 5, an intent without a sequence is refused, and says why."""
    decision = fence.decide(accepted=accepted("a", 5), superseded=(), intent=intent("b"),
                            manifests=[manifest("x", "b")])
    assert decision.verdict is fence.Verdict.REFUSE
    assert decision.intent_id == "a"
    assert decision.apply == ()
    assert "no sequence" in decision.reason and "sequence 5" in decision.reason


def test_the_highest_sequence_ever_accepted_orders_intents_when_the_accepted_has_none():
    """A record whose accepted intent has no sequence (written before the rule) still
    refuses a sequence not higher than the highest one it ever accepted."""
    lower = fence.decide(accepted=accepted("b"), superseded={"a"}, intent=intent("c", 2),
                         highest_sequence=5, manifests=[])
    higher = fence.decide(accepted=accepted("b"), superseded={"a"}, intent=intent("c", 6),
                          highest_sequence=5, manifests=[])
    assert lower.verdict is fence.Verdict.REFUSE
    assert "sequence 2, not higher than 5" in lower.reason
    assert higher.verdict is fence.Verdict.ACCEPT


def test_an_id_ever_accepted_is_refused_even_with_a_higher_sequence():
    """A replayed id is refused however high the sequence it now carries."""
    decision = fence.decide(accepted=accepted("b", 2), superseded={"a", "b"},
                            intent=intent("a", 9), manifests=[])
    assert decision.verdict is fence.Verdict.REFUSE
    assert "superseded" in decision.reason


def test_superseded_intent_coming_back_is_refused():
    """An id this site already replaced (a replayed push, a stale branch) is refused."""
    decision = fence.decide(accepted=accepted("b"), superseded={"a"}, intent=intent("a"),
                            manifests=[manifest("x", "a")])
    assert decision.verdict is fence.Verdict.REFUSE
    assert "superseded" in decision.reason
    assert decision.apply == ()


def test_superseded_set_does_not_refuse_the_accepted_intent():
    """Keeping the accepted intent never consults the superseded set."""
    decision = fence.decide(accepted=accepted("a"), superseded={"a"}, intent=intent("a"),
                            manifests=[])
    assert decision.verdict is fence.Verdict.KEEP


def test_stale_manifest_is_dropped_with_the_id_it_carried():
    """A manifest written for another intent is dropped and reported with file, object and id."""
    stale = manifest("old", "a", document=2)
    decision = fence.decide(accepted=accepted("a", 1), superseded=(), intent=intent("b", 2),
                            manifests=[manifest("new", "b"), stale])
    assert [m.name for m in decision.apply] == ["new"]
    (drop,) = decision.drops
    assert drop.object == "ConfigMap/ran/old"
    assert drop.carried == "a"
    assert drop.location == stale.location
    assert "carries intent 'a', not the accepted 'b'" in drop.reason


def test_manifest_without_intent_id_is_dropped():
    """A manifest that carries no intent id is never applied."""
    decision = fence.decide(accepted=None, superseded=(), intent=intent("a"),
                            manifests=[manifest("bare", None, kind="Namespace", namespace=None)])
    assert decision.apply == ()
    (drop,) = decision.drops
    assert drop.carried is None
    assert drop.object == "Namespace/bare"
    assert "carries no intent id" in drop.reason


def test_intent_id_match_is_exact():
    """Ids match exactly: no prefix, case or whitespace folding."""
    manifests = [manifest("p", "a-1"), manifest("c", "A"), manifest("s", "a ")]
    decision = fence.decide(accepted=None, superseded=(), intent=intent("a"), manifests=manifests)
    assert decision.apply == ()
    assert len(decision.drops) == 3


def test_split_keeps_manifest_order():
    """Applied manifests keep the order they were read in."""
    names = ["c", "a", "b"]
    apply, drops = fence.split(intent_id="i", manifests=[manifest(n, "i") for n in names])
    assert [m.name for m in apply] == names
    assert drops == ()


def test_refusal_reports_no_drops():
    """A refused revision applies nothing and reports no drops: the revision itself is refused."""
    decision = fence.decide(accepted=accepted("b", 2), superseded=(), intent=intent("a", 1),
                            manifests=[manifest("x", "b"), manifest("y", "a")])
    assert decision.apply == ()
    assert decision.drops == ()
