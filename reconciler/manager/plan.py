"""`reconciler plan`: what a commit would do at a site, changing nothing. Called by cli.

It runs sync's front half on the commit — bundle, validate, fence — against the site's
recorded state, then says for each object what its rollout would do. With a kubeconfig,
the live cluster answers: objects already in sync are `unchanged` (as a rollout decides)
and a server-side apply dry run says `created` or `configured`. Offline, the site's
recorded inventory and the manifests of the commit it last rolled out answer instead.
Drops come from the fence, prunes from the inventory, exactly as `sync` computes them.
The text is Markdown, to post as a pull-request comment.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import git

from reconciler import cluster, contract, errors
from reconciler.manager import crdschema, kubeschema
from reconciler.repo import bundle, documents, schemas, source
from reconciler.repo import tree as trees
from reconciler.site import fence, rollout, state

log = logging.getLogger("reconciler")

LIVE, INVENTORY = "cluster", "inventory"
FAILS = "fails"  # the API server refuses the object's dry run: the rollout would fail
UNKNOWN = "unknown"  # the API server did not answer (after retries): nothing can be said


@dataclasses.dataclass(frozen=True)
class Options:
    url: str
    site: str
    ref: str = contract.DEFAULT_BRANCH
    state_dir: Path = contract.DEFAULT_STATE_DIR
    cache_dir: Path | None = None


@dataclasses.dataclass(frozen=True)
class ObjectPlan:
    """What the rollout would do to one object."""

    ref: cluster.ObjectRef
    change: str  # created | configured | unchanged | applied (CRDs, offline) | fails | unknown
    wave: int | None  # None for the CRDs of crds/, applied before any wave
    location: documents.Location
    note: str = ""


@dataclasses.dataclass(frozen=True)
class PrunePlan:
    """An object the site would delete after a successful rollout (or keep, and why)."""

    entry: state.InventoryEntry
    kept: str = ""  # why it would be kept after all (online only); empty: deleted


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything `reconciler plan` found for one site at one commit."""

    site: str
    ref: str
    commit: str | None
    subject: str
    compared_with: str  # cluster | inventory
    accepted: fence.Accepted | None
    intent: documents.Intent | None = None
    decision: fence.Decision | None = None
    objects: tuple[ObjectPlan, ...] = ()
    prunes: tuple[PrunePlan, ...] = ()
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """The site would take this commit: accepted or kept, and nothing refused by the
        API server."""
        refused = self.decision is not None and self.decision.verdict is fence.Verdict.REFUSE
        return (not self.errors and self.decision is not None and not refused
                and not self.count(FAILS) and not self.count(UNKNOWN))

    def count(self, change: str) -> int:
        return sum(1 for o in self.objects if o.change == change)


def command(args: argparse.Namespace) -> int:
    """`reconciler plan`: exit 0 when the intent would be accepted or kept, else 1."""
    options = Options(url=args.repo, site=args.site, ref=args.ref, state_dir=args.state_dir,
                      cache_dir=args.cache_dir)
    target: cluster.Cluster | None = None
    if args.kubeconfig is not None:
        from reconciler import kube

        target = kube.connect(kubeconfig=args.kubeconfig, context=args.context)
    try:
        result = make(options=options, target=target)
    finally:
        if target is not None:
            target.close()
    print(render_json(result) if args.output == "json" else render_text(result))
    return 0 if result.ok else 1


def default_cache_dir() -> Path:
    """Plan's Git cache: the user's cache folder, so planning in a checkout leaves no files
    in it (`$XDG_CACHE_HOME/intent-reconciler/plan`, else ~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "intent-reconciler" / "plan"


def make(*, options: Options, target: cluster.Cluster | None) -> Plan:
    """The plan for `options.site` at `options.ref`; `target` None plans offline."""
    if not contract.SITE_NAME_PATTERN.match(options.site):
        raise errors.UsageError(f"invalid site name {options.site!r}")
    store = state.FileStateStore(state_dir=options.state_dir, site=options.site)
    current = store.load()  # read only: no lock, the file is replaced atomically
    cache_dir = options.cache_dir or default_cache_dir()
    repo = source.Source(url=options.url, branch=options.ref, cache_dir=cache_dir)
    revision = repo.fetch_ref(options.ref)
    base = Plan(site=options.site, ref=options.ref, commit=revision.sha,
                subject=revision.subject, compared_with=LIVE if target else INVENTORY,
                accepted=current.accepted)
    log.info("planning %s at %s (%s)", options.site, revision.sha[:12], revision.subject)
    tree = trees.GitTree(repo.commit(revision.sha))
    if not tree.is_dir(contract.site_dir(options.site)):
        sites = sorted({p.parts[1] for p in tree.files(contract.SITES_DIR) if len(p.parts) > 2})
        raise errors.UsageError(
            f"no site {options.site!r} in {repo.display_url} at {options.ref} (sites: "
            f"{', '.join(sites) or 'none'})")
    try:
        site_bundle = bundle.load(tree=tree, site=options.site)
        findings = schemas.check_manifests([*site_bundle.crds, *site_bundle.manifests])
        if findings:
            raise errors.ValidationError(f"{len(findings)} invalid manifest(s)",
                                         findings=[str(f) for f in findings])
    except errors.ValidationError as exc:
        return dataclasses.replace(base, errors=tuple(exc.findings))
    except errors.BundleError as exc:
        return dataclasses.replace(base, errors=(str(exc),))
    decision = fence.decide(accepted=current.accepted, superseded=current.superseded_ids(),
                            intent=site_bundle.intent, manifests=site_bundle.manifests)
    planned = dataclasses.replace(base, intent=site_bundle.intent, decision=decision)
    if decision.verdict is fence.Verdict.REFUSE:
        return planned
    if target is not None:
        objects, prunes, notes = _online(target=target, site_bundle=site_bundle,
                                         decision=decision, current=current)
    else:
        objects, prunes, notes = _offline(repo=repo, site_bundle=site_bundle,
                                          decision=decision, current=current)
    return dataclasses.replace(planned, objects=tuple(objects), prunes=tuple(prunes),
                               notes=tuple(notes))


def _online(*, target: cluster.Cluster, site_bundle: documents.Bundle, decision: fence.Decision,
            current: state.SiteState) -> tuple[list[ObjectPlan], list[PrunePlan], list[str]]:
    site = site_bundle.site
    order = [*site_bundle.crds, *[m for _, items in rollout.plan_waves(decision.apply)
                                  for m in items]]
    previews = rollout.preview(target=target, site=site, crds=site_bundle.crds,
                               manifests=decision.apply)
    objects = [ObjectPlan(ref=p.ref, change=p.change.value if p.change else
                          UNKNOWN if p.transient else FAILS,
                          wave=p.wave, location=manifest.location, note=p.note or p.error)
               for manifest, p in zip(order, previews, strict=True)]
    keep = {o.ref.inventory_id for o in objects if o.wave is not None}
    held = {rollout.ref_of(target, m, site=site).inventory_id
            for m in _dropped(site_bundle, decision)}
    prunes = []
    for entry in _stale(current, keep=keep | held, prune=site_bundle.intent.prune):
        ref = cluster.ObjectRef(entry.api_version, entry.kind, entry.namespace, entry.name)
        try:
            live = target.get(ref)
        except errors.NotFoundError:
            live = None
        if live is None:
            continue  # already gone: nothing to delete
        prunes.append(PrunePlan(entry=entry, kept=rollout.prune_kept(live, site=site)))
    return objects, prunes, []


def _offline(*, repo: source.Source, site_bundle: documents.Bundle, decision: fence.Decision,
             current: state.SiteState) -> tuple[list[ObjectPlan], list[PrunePlan], list[str]]:
    site = site_bundle.site
    inventory = {entry.id: entry for entry in current.inventory}
    before, note = _last_rolled_out(repo=repo, current=current)
    notes = [note] if note else []
    scope = _Scope(site_bundle, current.inventory)
    objects = []
    for crd in site_bundle.crds:
        objects.append(ObjectPlan(ref=scope.ref(crd), change="applied", wave=None,
                                  location=crd.location,
                                  note="CRDs are applied on every rollout; not in the inventory"))
    for wave, items in rollout.plan_waves(decision.apply):
        for manifest in items:
            ref = scope.ref(manifest)
            body = rollout.desired(manifest, site=site)
            if ref.inventory_id not in inventory:
                change = "created"
            elif before is not None and before.get(ref.inventory_id) == body:
                change = "unchanged"
            else:
                change = "configured"
            objects.append(ObjectPlan(ref=ref, change=change, wave=wave,
                                      location=manifest.location))
    keep = {o.ref.inventory_id for o in objects if o.wave is not None}
    held = {scope.ref(m).inventory_id for m in _dropped(site_bundle, decision)}
    prunes = [PrunePlan(entry=e) for e in _stale(current, keep=keep | held,
                                                 prune=site_bundle.intent.prune)]
    return objects, prunes, notes


def _dropped(site_bundle: documents.Bundle, decision: fence.Decision) -> list[documents.Manifest]:
    applied = {id(m) for m in decision.apply}
    return [m for m in site_bundle.manifests if id(m) not in applied]


def _stale(current: state.SiteState, *, keep: set[str],
           prune: bool) -> list[state.InventoryEntry]:
    """The inventory entries a successful rollout would prune, in prune order (as sync)."""
    if not prune:
        return []
    return rollout.prune_order(e for e in current.inventory if e.id not in keep)


def _last_rolled_out(*, repo: source.Source,
                     current: state.SiteState) -> tuple[dict[str, Any] | None, str]:
    """The site's objects as its last rollout applied them, by inventory id, for the
    offline comparison; None (and why) when that commit cannot be read here."""
    record = current.rollout
    if record is None:
        return None, ""
    try:
        commit = repo.commit(record.commit)
    except (ValueError, git.BadName, git.BadObject):
        return None, (f"the commit the site last rolled out ({record.commit[:12]}) is not in "
                      "this repository; objects it holds are shown as configured")
    try:
        last = bundle.load(tree=trees.GitTree(commit), site=current.site)
    except errors.ReconcilerError as exc:
        return None, (f"the site's files at the commit it last rolled out "
                      f"({record.commit[:12]}) cannot be read ({exc}); objects it holds are "
                      "shown as configured")
    # Only what that rollout really applied: all of it when it succeeded, else the waves
    # it finished (a failed or aborted rollout never reached the later ones).
    done = {w.wave for w in record.waves if w.phase is state.WavePhase.HEALTHY}
    finished = record.phase is state.Outcome.SUCCEEDED
    scope = _Scope(last, current.inventory)
    return {scope.ref(m).inventory_id: rollout.desired(m, site=current.site)
            for m in last.manifests
            if m.intent_id == record.intent_id and (finished or m.wave in done)}, ""


class _Scope:
    """Which kinds are namespaced, without a cluster: Kubernetes' own list for built-in
    kinds, the repository's CRDs for the rest (as `validate` decides)."""

    def __init__(self, site_bundle: documents.Bundle,
                 inventory: tuple[state.InventoryEntry, ...] = ()) -> None:
        self._catalog = crdschema.Catalog()
        for manifest in [*site_bundle.crds, *site_bundle.manifests]:
            if crdschema.is_crd(manifest):
                self._catalog.add(manifest)
        self._recorded = {(cluster.ObjectRef(e.api_version, e.kind, None, e.name).group,
                           e.kind, e.name): e.namespace for e in inventory}

    def ref(self, manifest: documents.Manifest) -> cluster.ObjectRef:
        ref = cluster.ObjectRef.of(manifest.body)
        if ref.namespace is not None:
            return ref
        group = ref.group
        namespaced = self._catalog.namespaced(group=group, kind=ref.kind)
        if namespaced is None and kubeschema.is_builtin_group(group):
            namespaced = kubeschema.namespaced(group=group, kind=ref.kind)
        if namespaced is None:
            # A custom kind whose CRD is installed some other way: where the site applied
            # it before tells its scope; a new one is shown as written.
            return dataclasses.replace(
                ref, namespace=self._recorded.get((group, ref.kind, ref.name)))
        return dataclasses.replace(ref, namespace="default") if namespaced else ref


def _verdict_line(plan: Plan) -> str:
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


def render_text(plan: Plan) -> str:
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
    against = ("the live cluster (server-side apply dry run)" if plan.compared_with == LIVE
               else "the site's recorded inventory (offline)")
    out += [f"Compared with {against}.", ""]
    out += ["| Wave | Object | Change | File |", "| ---: | --- | --- | --- |"]
    for obj in plan.objects:
        wave = "crds" if obj.wave is None else str(obj.wave)
        change = f"{obj.change} ({obj.note})" if obj.note else obj.change
        if obj.change in (FAILS, UNKNOWN):
            change = f"**{obj.change}**: {obj.note}"
        out.append(f"| {wave} | `{obj.ref}` | {_cell(change)} | {_where(obj.location)} |")
    drops = plan.decision.drops
    if drops:
        out += ["", f"**Dropped ({len(drops)}):** not applied, and their objects are kept as "
                    "they are.", "", "| Object | File | Carries |", "| --- | --- | --- |"]
        out += [f"| `{d.object}` | {_where(d.location)} | "
                f"{f'`{d.carried}`' if d.carried else '(no id)'} |" for d in drops]
    if plan.prunes:
        out += ["", f"**Pruned after a successful rollout ({len(plan.prunes)}):**", "",
                "| Object | Applied for | |", "| --- | --- | --- |"]
        for prune in plan.prunes:
            entry = prune.entry
            ref = cluster.ObjectRef(entry.api_version, entry.kind, entry.namespace, entry.name)
            what = f"kept: {prune.kept}" if prune.kept else "deleted"
            out.append(f"| `{ref}` | `{entry.intent_id}` | {what} |")
    out += ["", f"**Summary:** {_summary(plan)}."]
    out += [f"_Note: {note}._" for note in plan.notes]
    return "\n".join(out)


def _summary(plan: Plan) -> str:
    parts = [f"{plan.count(c)} to {verb}" for c, verb in (("created", "create"),
                                                           ("configured", "configure"))]
    parts.append(f"{plan.count('unchanged')} unchanged")
    if plan.count(FAILS):
        parts.append(f"**{plan.count(FAILS)} refused by the API server**")
    if plan.count(UNKNOWN):
        parts.append(f"**{plan.count(UNKNOWN)} not answered by the API server**")
    if plan.count("applied"):
        parts.append(f"{plan.count('applied')} CRD(s) applied")
    drops = len(plan.decision.drops) if plan.decision else 0
    deleted = sum(1 for p in plan.prunes if not p.kept)
    parts += [f"{drops} dropped", f"{deleted} to prune"]
    return ", ".join(parts)


def _cell(text: str) -> str:
    """Text that stays inside one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _where(location: documents.Location) -> str:
    return f"{location.file}:{location.line}" if location.line else location.file


def render_json(plan: Plan) -> str:
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
        "prunes": [{"object": str(cluster.ObjectRef(p.entry.api_version, p.entry.kind,
                                                    p.entry.namespace, p.entry.name)),
                    "intentId": p.entry.intent_id, "kept": p.kept or None}
                   for p in plan.prunes],
        "errors": list(plan.errors),
        "notes": list(plan.notes),
        "summary": {c: plan.count(c)
                    for c in ("created", "configured", "unchanged", "applied", FAILS, UNKNOWN)},
    }, indent=2)


def _located(location: documents.Location) -> Mapping[str, Any]:
    return {"file": location.file, "line": location.line, "document": location.document}
