"""The intent fence: accept, keep or refuse an intent, and split manifests. Pure logic.

Called by pipeline.evaluate() and the manager's plan with the recorded state and a freshly
read bundle; it does no I/O, so every rule of the protocol is pinned by fast unit tests.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Collection, Sequence

from reconciler.repo import documents


class Verdict(enum.StrEnum):
    ACCEPT = "accept"  # a new intent: record it, then roll it out
    KEEP = "keep"  # the accepted intent again: converge to it
    REFUSE = "refuse"  # stale or replayed: the accepted intent stays in force


@dataclasses.dataclass(frozen=True)
class Accepted:
    """The intent in force at a site, as recorded in the state store."""

    id: str
    sequence: int | None
    commit: str
    accepted_at: str


@dataclasses.dataclass(frozen=True)
class Drop:
    """A manifest that was not applied, and why. It holds its live object (inventory.held)."""

    manifest: documents.Manifest
    carried: str | None  # the intent id it carried, None when it had none
    reason: str

    @property
    def location(self) -> documents.Location:
        return self.manifest.location

    @property
    def object(self) -> str:
        """`Kind/namespace/name`, as the manifest wrote it."""
        return self.manifest.describe()


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to do with one revision of one site."""

    verdict: Verdict
    intent_id: str  # the intent in force after this decision
    reason: str
    apply: tuple[documents.Manifest, ...] = ()
    drops: tuple[Drop, ...] = ()


def decide(
    *,
    accepted: Accepted | None,
    superseded: Collection[str],
    intent: documents.Intent,
    manifests: Sequence[documents.Manifest],
    highest_sequence: int | None = None,
) -> Decision:
    """Decide on `intent` given what is in force, then fence the manifests.

    `superseded` holds the ids this site ever accepted (SiteState.accepted_ids()): one of
    those coming back under another id's watch (a replayed push, a stale branch) is
    refused. `highest_sequence` is the highest sequence the site ever accepted
    (SiteState.highest_sequence()); the accepted intent's own sequence counts too. Once a
    site has seen a sequence, an intent must carry a higher one.
    """
    if accepted is not None and intent.id != accepted.id:
        refusal = _refusal(accepted=accepted, superseded=superseded, intent=intent,
                           highest=_highest(accepted, highest_sequence))
        if refusal:
            return Decision(verdict=Verdict.REFUSE, intent_id=accepted.id, reason=refusal)
    if accepted is None:
        verdict, reason = Verdict.ACCEPT, f"first intent {intent.id!r} for this site"
    elif intent.id == accepted.id:
        verdict, reason = Verdict.KEEP, f"intent {intent.id!r} is already accepted"
    else:
        verdict, reason = Verdict.ACCEPT, f"new intent {intent.id!r} supersedes {accepted.id!r}"
    apply, drops = split(intent_id=intent.id, manifests=manifests)
    return Decision(verdict=verdict, intent_id=intent.id, reason=reason, apply=apply, drops=drops)


def _highest(accepted: Accepted, recorded: int | None) -> int | None:
    known = [s for s in (accepted.sequence, recorded) if s is not None]
    return max(known) if known else None


def _refusal(*, accepted: Accepted, superseded: Collection[str], intent: documents.Intent,
             highest: int | None) -> str:
    if highest is not None and intent.sequence is None:
        return (
            f"intent {intent.id!r} has no sequence, but this site has accepted sequence "
            f"{highest}; once a site has seen a sequence, every intent needs a higher one"
        )
    if highest is not None and intent.sequence is not None and intent.sequence <= highest:
        of = (f"of the accepted intent {accepted.id!r}" if highest == accepted.sequence
              else f"the highest this site accepted (the accepted intent {accepted.id!r} "
                   "has none)")
        return (f"intent {intent.id!r} has sequence {intent.sequence}, not higher than "
                f"{highest} {of}")
    if intent.id in superseded:
        return (
            f"intent {intent.id!r} was accepted before and has been superseded; "
            "a rollback needs a new intent id"
        )
    return ""


def split(
    *, intent_id: str, manifests: Sequence[documents.Manifest]
) -> tuple[tuple[documents.Manifest, ...], tuple[Drop, ...]]:
    """Manifests carrying `intent_id` to apply; every other one dropped with its reason."""
    apply: list[documents.Manifest] = []
    drops: list[Drop] = []
    for manifest in manifests:
        carried = manifest.intent_id
        if carried == intent_id:
            apply.append(manifest)
            continue
        reason = (
            f"carries intent {carried!r}, not the accepted {intent_id!r}"
            if carried is not None
            else f"carries no intent id; the accepted intent is {intent_id!r}"
        )
        drops.append(Drop(manifest=manifest, carried=carried, reason=reason))
    return tuple(apply), tuple(drops)
