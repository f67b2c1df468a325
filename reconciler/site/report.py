"""Render what the reconciler knows for people (tables) and for scripts (JSON). Called by cli."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Sequence
from typing import Any

from reconciler import durations
from reconciler.repo import documents
from reconciler.site import pipeline, state


def _age(stamp: str | None, *, now: datetime.datetime | None = None) -> str:
    if not stamp:
        return "-"
    now = now or datetime.datetime.now(datetime.UTC)
    seconds = max(0.0, (now - state.parse_time(stamp)).total_seconds())
    return f"{durations.format_seconds(seconds)} ago"


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain aligned table, the way kubectl prints one."""
    cells = [[str(c) for c in headers], *[["-" if c is None else str(c) for c in row]
                                          for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def status_text(site: state.SiteState) -> str:
    """The readable status of one site: intent, rollout, last sync, drops, errors, history."""
    out: list[str] = []
    source = f"{site.source.url} (branch {site.source.branch})" if site.source else "-"
    out.append(f"Site:          {site.site}")
    out.append(f"Source:        {source}, last fetched {_short(site.last_fetched_head)}")
    if site.accepted:
        seq = f", sequence {site.accepted.sequence}" if site.accepted.sequence is not None else ""
        out.append(f"Intent:        {site.accepted.id}{seq}, accepted "
                   f"{_age(site.accepted.accepted_at)} at commit {_short(site.accepted.commit)}")
    else:
        out.append("Intent:        none accepted yet")
    if site.suspended:
        why = f": {site.suspended.reason}" if site.suspended.reason else ""
        out.append(f"Suspended:     by {site.suspended.by}, {_age(site.suspended.at)}{why} "
                   f"(nothing is applied until `reconciler resume --site {site.site}`)")
    if site.degraded:
        d = site.degraded
        passes = "1 failed pass" if d.failures == 1 else f"{d.failures} failed passes in a row"
        out.append(f"Degraded:      since {_age(d.since)} ({passes}; retried with backoff, "
                   f"nothing pruned): {d.stage}: {d.message}")
    if site.rollout:
        r = site.rollout
        extra = f" (superseded by {r.superseded_by})" if r.superseded_by else ""
        out.append(f"Rollout:       {r.phase.value}{extra}, intent {r.intent_id}, started "
                   f"{_age(r.started_at)}" + (f": {r.message}" if r.message else ""))
        current = next((w.wave for w in r.waves if w.phase in (
            state.WavePhase.APPLYING, state.WavePhase.WAITING, state.WavePhase.FAILED)), None)
        for wave in r.waves:
            marker = "->" if wave.wave == current else "  "
            out.append(f"  {marker} wave {wave.wave:<4} {wave.phase.value:<9} "
                       f"{', '.join(wave.objects)}")
    if site.last_sync:
        s = site.last_sync
        out.append(
            f"Last sync:     {s.result} {_age(s.finished_at or s.started_at)} at commit "
            f"{_short(s.commit)}: {s.created} created, {s.configured} configured, "
            f"{s.unchanged} unchanged, {s.pruned} pruned, {s.dropped} dropped"
        )
        if s.message:
            out.append(f"               {s.message}")
    pending = sum(entry.pending for entry in site.inventory)
    out.append(f"Inventory:     {len(site.inventory)} object(s)"
               + (f", {pending} pending (recorded before an apply that did not end)"
                  if pending else ""))
    out.append("")
    out.append(f"Drops ({len(site.drops)}):")
    if site.drops:
        out.append(table(["OBJECT", "FILE", "CARRIED", "REASON"], [
            (d.object, documents.position(d.file, d.line), d.carried or "(none)", d.reason)
            for d in site.drops
        ]))
    out.append("")
    out.append(f"Errors ({len(site.errors)}):")
    for error in site.errors[-5:]:
        out.append(f"  {error.time}  {error.stage}: {error.message}")
    out.append("")
    out.append("History:")
    out.append(table(["INTENT", "SEQ", "COMMIT", "OUTCOME", "ACCEPTED", "NOTE"], [
        (h.id, h.sequence, _short(h.commit), h.outcome.value, _age(h.accepted_at),
         "; ".join(filter(None, [
             f"superseded by {h.superseded_by}"
             if h.superseded_by and h.superseded_by not in h.message else "", h.message])))
        for h in reversed(site.history)
    ]))
    return "\n".join(out)


def status_json(site: state.SiteState) -> str:
    """The state itself: the same document as the state file (schemas/state.schema.json)."""
    return json.dumps(state.to_json(site), indent=2)


def sync_text(result: pipeline.SyncResult) -> str:
    """The summary `reconciler sync` prints when a pass ends."""
    lines = [f"{'ok' if result.ok else 'FAILED'}: site {result.site} at "
             f"{_short(result.commit)}: {result.message}"]
    counts: dict[str, int] = {}
    for item in result.results:
        counts[item.change.value] = counts.get(item.change.value, 0) + 1
    failures = result.failures
    if failures:
        counts["failed"] = len(failures)
    if result.results or failures:
        lines.append("objects: " + ", ".join(f"{n} {c}" for c, n in sorted(counts.items())))
        lines.extend(f"  {item.ref}  {item.change.value}"
                     + (f": {item.note}" if item.note else "") for item in result.results)
        lines.extend(f"  {f.ref}  failed: {f.error}" for f in failures)
    if result.drops:
        lines.append(f"dropped {len(result.drops)}:")
        lines.extend(f"  {d.object}  ({d.location}): {d.reason}" for d in result.drops)
    if len(result.errors) > 1:
        lines.append("errors:")
        lines.extend(f"  {e}" for e in result.errors)
    return "\n".join(lines)


def sync_json(result: pipeline.SyncResult) -> str:
    return json.dumps({
        "ok": result.ok,
        "site": result.site,
        "commit": result.commit,
        "verdict": result.verdict.value if result.verdict else None,
        "intentId": result.intent_id,
        "phase": result.phase.value if result.phase else None,
        "message": result.message,
        "applied": [{"object": str(r.ref), "change": r.change.value,
                     "intentId": r.intent_id, **({"note": r.note} if r.note else {})}
                    for r in result.results],
        "failed": [{"object": str(f.ref), "error": f.error} for f in result.failures],
        "drops": [{**d.location.as_dict(), "object": d.object, "carried": d.carried,
                   "reason": d.reason} for d in result.drops],
        "errors": list(result.errors),
    }, indent=2)
