"""Render the manager's results for people and for scripts. Called by cli.

The manager's commands compute plain results (`plan.Plan`, `validate.Report`,
`publish.Published`); this module alone turns them into text, Markdown, JSON or GitHub
annotations, as `site/report.py` does for the site's status and sync results.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from reconciler.manager import plan as plans
from reconciler.manager import publish, rbac, validate
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


# --- validate ------------------------------------------------------------------------------


def _counts(report: validate.Report) -> str:
    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    return (f"{plural(len(report.sites), 'site')}, {plural(report.files, 'file')}, "
            f"{plural(report.documents, 'document')} checked in {report.seconds:.2f}s "
            f"(Kubernetes {report.kube_version} schemas)")


def validate_text(report: validate.Report) -> str:
    """One line per finding, `file:line:column: severity: object: path: message [rule]`."""
    lines = [f.one_line() for f in report.findings]
    if report.findings:
        lines.append("")
        lines.append(f"{report.errors} error(s), {report.warnings} warning(s): "
                     + _counts(report))
    else:
        lines.append("ok: " + _counts(report))
    return "\n".join(lines)


def validate_json(report: validate.Report) -> str:
    return json.dumps({
        "root": report.root,
        "sites": list(report.sites),
        "files": report.files,
        "documents": report.documents,
        "kubernetesVersion": report.kube_version,
        "errors": report.errors,
        "warnings": report.warnings,
        "seconds": round(report.seconds, 3),
        "findings": [f.as_dict() for f in report.findings],
    }, indent=2)


def validate_github(report: validate.Report) -> str:
    """GitHub Actions workflow commands: an annotation on the line of each finding."""
    lines = []
    for f in report.findings:
        props = [f"file={_escape_property(f.location.file)}"]
        line = f.line if f.line is not None else f.location.line
        if line is not None:
            props.append(f"line={line}")
        if f.column is not None:
            props.append(f"col={f.column}")
        props.append(f"title={_escape_property(f'reconciler validate: {f.rule}')}")
        what = f"{f.object}: " if f.object else ""
        path = f"{f.path}: " if f.path != "$" else ""
        lines.append(f"::{f.severity.value} {','.join(props)}::"
                     + _escape_data(f"{what}{path}{f.message}"))
    lines.append(f"{report.errors} error(s), {report.warnings} warning(s): " + _counts(report))
    return "\n".join(lines)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


# --- intent publish ------------------------------------------------------------------------


def publish_text(result: publish.Published) -> str:
    """The human summary; a dry run shows the diff and the commit message instead."""
    was = f"{result.previous_id or 'none'}"
    if result.previous_sequence is not None:
        was += f", sequence {result.previous_sequence}"
    stamped = (f"{result.files_stamped} files, {result.documents_stamped} documents stamped; "
               f"{result.documents_unchanged} documents already carried the id")
    if result.dry_run:
        return (f"{result.diff()}\nCommit message:\n"
                + "".join(f"    {line}\n".rstrip(" ") if line else "\n"
                          for line in result.message.splitlines())
                + f"\nDry run: would publish intent {result.intent_id} for site {result.site} "
                  f"(sequence {result.sequence}; was {was}): {stamped}. Nothing was written "
                  f"or committed.")
    pushed = (f"{result.pushed.remote} ({result.pushed.url}) {result.pushed.ref}"
              if result.pushed else "no (git push, or publish with --push)")
    return "\n".join([
        f"Published intent {result.intent_id} for site {result.site}",
        f"  commit:      {result.commit}",
        f"  sequence:    {result.sequence} (was {was})",
        f"  description: {result.description}",
        f"  stamped:     {stamped}",
        f"  signed:      {'yes' if result.signed else 'no'}",
        f"  pushed:      {pushed}",
    ])


def publish_json(result: publish.Published) -> str:
    """The same facts as `publish_text`, as one JSON object."""
    body: dict[str, Any] = {
        "site": result.site,
        "intentId": result.intent_id,
        "sequence": result.sequence,
        "description": result.description,
        "previousId": result.previous_id,
        "previousSequence": result.previous_sequence,
        "commit": result.commit,
        "signed": result.signed,
        "pushed": dataclasses.asdict(result.pushed) if result.pushed else None,
        "dryRun": result.dry_run,
        "filesStamped": result.files_stamped,
        "documentsStamped": result.documents_stamped,
        "documentsUnchanged": result.documents_unchanged,
        "files": [
            {"path": c.path, "created": c.before is None,
             "documents": [{"document": d.document, "line": d.line, "object": d.object,
                            "action": d.action.value, "previous": d.previous}
                           for d in c.documents]}
            for c in result.changes],
        "message": result.message,
    }
    if result.dry_run:
        body["diff"] = result.diff()
    return json.dumps(body, indent=2)


# --- rbac ----------------------------------------------------------------------------------


def rbac_yaml(result: rbac.Result) -> str:
    """The ClusterRole and its binding as YAML for `kubectl apply -f -`, with a comment that
    says which sites it is for and which resources were guessed."""
    import io

    from ruamel import yaml as ruamel_yaml

    sites = " ".join(f"--site {site}" for site in result.sites)
    out = io.StringIO()
    out.write(f"# Made by `reconciler rbac {sites} {result.root}`: what the service account\n"
              f"# {result.namespace}/{result.service_account} needs for the objects of "
              f"{'this site' if len(result.sites) == 1 else 'these sites'}.\n")
    for kind in result.guessed:
        out.write(f"# {kind.api_version} {kind.kind} ({kind.first_seen}): no CRD in the "
                  f"repository defines it; its resource is guessed as {kind.resource!r}\n")
    dumper = ruamel_yaml.YAML(typ="rt")
    dumper.default_flow_style = False
    dumper.indent(mapping=2, sequence=4, offset=2)
    dumper.dump_all(rbac.manifests(result), out)
    return out.getvalue().rstrip("\n")


def rbac_json(result: rbac.Result) -> str:
    """The ClusterRole and its binding as a v1 List, which `kubectl apply -f -` takes."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac.manifests(result)},
                      indent=2)

