"""Render the manager's results for people and for scripts. Called by cli.

The manager's commands compute plain results (`plan.Plan`, `validate.Report`,
`publish.Published`); this module alone turns them into text, Markdown, JSON or GitHub
annotations, as `site/report.py` does for the site's status and sync results.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from reconciler.manager import plan as plans
from reconciler.repo import documents
from reconciler.site import fence, prune, state

# --- plan ----------------------------------------------------------------------------------


def _verdict_line(plan: plans.Plan) -> str:
    decision, intent, accepted = plan.decision, plan.intent, plan.accepted
    assert decision is not None and intent is not None
    seq = f" (sequence {intent.sequence})" if intent.sequence is not None else ""
    now = f"`{accepted.id}`" if accepted else "none yet"
    if decision.verdict is fence.Verdict.ACCEPT:
        return (f"**Intent `{intent.id}`{seq} would be accepted.** In force at the site: "
                f"{now}.")
    if decision.verdict is fence.Verdict.KEEP:
        return f"**Intent `{intent.id}`{seq} is already accepted:** the site converges to it."
    return (f"**Intent `{intent.id}`{seq} would be REFUSED:** {decision.reason}. "
            f"`{decision.intent_id}` stays in force; nothing is applied.")


def plan_text(plan: plans.Plan) -> str:
    """Markdown: reads as plain text in a terminal and renders in a pull-request comment."""
    short = plan.commit[:12] if plan.commit else "-"
    out = [f"### reconciler plan: site `{plan.site}` at `{short}` ({plan.ref})", ""]
    if plan.subject:
        out += [f"Commit: {plan.subject}", ""]
    if plan.errors:
        out += ["**Invalid revision: a site refuses it and keeps what is in force.**", ""]
        out += [f"- {error}" for error in plan.errors]
        return "\n".join(out)
    if plan.decision is None or plan.intent is None:
        return "\n".join(out)
    out += [_verdict_line(plan), "", f"> {plan.decision.reason}", ""]
    if plan.decision.verdict is fence.Verdict.REFUSE:
        return "\n".join(out)
    against = ("the live cluster (server-side apply dry run)"
               if plan.compared_with == plans.LIVE
               else "the site's recorded inventory (offline)")
    out += [f"Compared with {against}.", ""]
    out += ["| Wave | Object | Change | File |", "| ---: | --- | --- | --- |"]
    for obj in plan.objects:
        wave = "crds" if obj.wave is None else str(obj.wave)
        change = f"{obj.change} ({obj.note})" if obj.note else obj.change
        if obj.change in (plans.FAILS, plans.UNKNOWN):
            change = f"**{obj.change}**: {obj.note}"
        out.append(f"| {wave} | `{obj.ref}` | {_cell(change)} | {obj.location.position} |")
    drops = plan.decision.drops
    if drops:
        out += ["", f"**Dropped ({len(drops)}):** not applied, and their objects are kept as "
                    "they are.", "", "| Object | File | Carries |", "| --- | --- | --- |"]
        out += [f"| `{d.object}` | {d.location.position} | "
                f"{f'`{d.carried}`' if d.carried else '(no id)'} |" for d in drops]
    if plan.prunes:
        out += ["", f"**Pruned after a successful rollout ({len(plan.prunes)}):**", "",
                "| Object | Applied for | |", "| --- | --- | --- |"]
        for planned in plan.prunes:
            entry = planned.entry
            ref = prune.ref_of(entry)
            what = f"kept: {planned.kept}" if planned.kept else "deleted"
            out.append(f"| `{ref}` | `{entry.intent_id}` | {what} |")
    out += ["", f"**Summary:** {_summary(plan)}."]
    out += [f"_Note: {note}._" for note in plan.notes]
    return "\n".join(out)


def _summary(plan: plans.Plan) -> str:
    parts = [f"{plan.count(c)} to {verb}" for c, verb in (("created", "create"),
                                                           ("configured", "configure"))]
    parts.append(f"{plan.count('unchanged')} unchanged")
    if plan.count(plans.FAILS):
        parts.append(f"**{plan.count(plans.FAILS)} refused by the API server**")
    if plan.count(plans.UNKNOWN):
        parts.append(f"**{plan.count(plans.UNKNOWN)} not answered by the API server**")
    if plan.count("applied"):
        parts.append(f"{plan.count('applied')} CRD(s) applied")
    drops = len(plan.decision.drops) if plan.decision else 0
    deleted = sum(1 for p in plan.prunes if not p.kept)
    parts += [f"{drops} dropped", f"{deleted} to prune"]
    return ", ".join(parts)


def _cell(text: str) -> str:
    """Text that stays inside one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def plan_json(plan: plans.Plan) -> str:
    decision, intent = plan.decision, plan.intent
    return json.dumps({
        "site": plan.site,
        "ref": plan.ref,
        "commit": plan.commit,
        "ok": plan.ok,
        "comparedWith": plan.compared_with,
        "accepted": state.to_json(plan.accepted) if plan.accepted else None,
        "intent": {"id": intent.id, "sequence": intent.sequence,
                   "description": intent.description} if intent else None,
        "verdict": decision.verdict.value if decision else None,
        "reason": decision.reason if decision else None,
        "objects": [{"object": str(o.ref), "apiVersion": o.ref.api_version,
                     "kind": o.ref.kind, "namespace": o.ref.namespace, "name": o.ref.name,
                     "wave": o.wave, "change": o.change, "note": o.note,
                     **_located(o.location)} for o in plan.objects],
        "drops": [{"object": d.object, "carried": d.carried, "reason": d.reason,
                   **_located(d.location)} for d in (decision.drops if decision else ())],
        "prunes": [{"object": str(prune.ref_of(p.entry)),
                    "intentId": p.entry.intent_id, "kept": p.kept or None}
                   for p in plan.prunes],
        "errors": list(plan.errors),
        "notes": list(plan.notes),
        "summary": {c: plan.count(c)
                    for c in ("created", "configured", "unchanged", "applied", plans.FAILS,
                              plans.UNKNOWN)},
    }, indent=2)


def _located(location: documents.Location) -> Mapping[str, Any]:
    return {"file": location.file, "line": location.line, "document": location.document}
