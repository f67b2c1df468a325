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

import dataclasses
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import git

from reconciler import cluster, contract, errors, kubekinds
from reconciler.manager import crdschema, kubeschema
from reconciler.repo import bundle, documents, schemas, signatures, source
from reconciler.repo import tree as trees
from reconciler.site import drift, fence, inventory, managers, prune, rollout, state
from reconciler.site import policy as policies

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
    limits: bundle.Limits = dataclasses.field(default_factory=bundle.Limits)  # as sync reads
    access: source.Access = dataclasses.field(default_factory=source.Access)  # as sync fetches
    policy: policies.Policy = dataclasses.field(default_factory=policies.Policy)  # as sync's
    # --verify-signatures: the commit is refused as sync would refuse it (None: not checked).
    trust: signatures.Trust | None = None


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


def default_cache_dir() -> Path:
    """Plan's Git cache: the user's cache folder, so planning in a checkout leaves no files
    in it (`$XDG_CACHE_HOME/intent-reconciler/plan`, else ~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "intent-reconciler" / "plan"


def make(*, options: Options, target: cluster.Cluster | None) -> Plan:
    """The plan for `options.site` at `options.ref`; `target` None plans offline."""
    store = state.FileStateStore(state_dir=options.state_dir, site=options.site)
    current = store.load()  # read only: no lock, the file is replaced atomically
    cache_dir = options.cache_dir or default_cache_dir()
    repo = source.Source(url=options.url, branch=options.ref, cache_dir=cache_dir,
                         access=options.access)
    revision = repo.fetch_ref(options.ref)
    base = Plan(site=options.site, ref=options.ref, commit=revision.sha,
                subject=revision.subject, compared_with=LIVE if target else INVENTORY,
                accepted=current.accepted)
    log.info("planning %s at %s (%s)", options.site, revision.sha[:12], revision.subject)
    if options.trust is not None:
        try:  # after the site's last fetched head when the commit descends from it
            repo.verify(revision.sha, trust=options.trust, site=options.site,
                        base=current.last_fetched_head,
                        where=f"{options.ref!r} of {repo.display_url}")
        except errors.SignatureError as exc:
            return dataclasses.replace(base, errors=(str(exc),))
    tree = trees.GitTree(repo.commit(revision.sha))
    if not tree.is_dir(contract.site_dir(options.site)):
        raise bundle.missing_site(tree, options.site,
                                  where=f"{repo.display_url} at {options.ref}",
                                  kind=errors.UsageError)
    try:
        site_bundle = bundle.load(tree=tree, site=options.site, limits=options.limits)
        findings = [*map(str, schemas.check_bundle(site_bundle)),
                    *map(str, policies.check(policy=options.policy,
                                             manifests=site_bundle.manifests,
                                             crds=site_bundle.crds,
                                             intent_id=site_bundle.intent.id,
                                             served=policies.served_scope(target)))]
        if findings:
            raise errors.ValidationError(f"{len(findings)} invalid manifest(s)",
                                         findings=findings)
    except errors.ValidationError as exc:
        return dataclasses.replace(base, errors=tuple(exc.findings))
    except errors.BundleError as exc:
        return dataclasses.replace(base, errors=(str(exc),))
    decision = fence.decide(accepted=current.accepted, superseded=current.accepted_ids(),
                            highest_sequence=current.highest_sequence(),
                            intent=site_bundle.intent, manifests=site_bundle.manifests)
    planned = dataclasses.replace(base, intent=site_bundle.intent, decision=decision)
    if decision.verdict is fence.Verdict.REFUSE:
        return planned
    if target is not None:
        objects, prunes, notes = _online(target=target, site_bundle=site_bundle,
                                         decision=decision, current=current)
    else:
        objects, prunes, notes = _offline(repo=repo, site_bundle=site_bundle,
                                          decision=decision, current=current,
                                          limits=options.limits)
    return dataclasses.replace(planned, objects=tuple(objects), prunes=tuple(prunes),
                               notes=tuple(notes))


def _online(*, target: cluster.Cluster, site_bundle: documents.Bundle, decision: fence.Decision,
            current: state.SiteState) -> tuple[list[ObjectPlan], list[PrunePlan], list[str]]:
    site = site_bundle.site
    order = [*site_bundle.crds, *[m for _, items in rollout.plan_waves(decision.apply)
                                  for m in items]]
    previews = _preview(target=target, site=site, crds=site_bundle.crds,
                        manifests=decision.apply)
    objects = [ObjectPlan(ref=p.ref, change=p.change.value if p.change else
                          UNKNOWN if p.transient else FAILS,
                          wave=p.wave, location=manifest.location, note=p.note or p.error)
               for manifest, p in zip(order, previews, strict=True)]
    held = inventory.held_ids(rollout.ref_of(target, d.manifest, site=site)
                              for d in decision.drops)
    prunes = []
    for entry in _stale(current, objects=objects, held=held, prune=site_bundle.intent.prune):
        try:
            live = target.get(prune.ref_of(entry))
        except errors.GroupUnavailableError as exc:
            # Prune never deletes what it cannot see: kept, and the pass fails at prune.
            prunes.append(PrunePlan(entry=entry, kept=f"its API group {exc.group_version} "
                                                      f"cannot be reached ({exc.why})"))
            continue
        except errors.NotFoundError:
            live = None
        if live is None:
            continue  # already gone: nothing to delete
        prunes.append(PrunePlan(entry=entry, kept=prune.kept(live, site=site)))
    return objects, prunes, []


@dataclasses.dataclass(frozen=True)
class Preview:
    """What rollout.run() would do to one object: a change, or the error the server gave."""

    ref: cluster.ObjectRef
    change: cluster.Change | None  # None: the apply would fail with `error`
    wave: int | None  # None for the CRDs of crds/, applied before any wave
    note: str = ""
    error: str = ""
    transient: bool = False  # the error could heal: the server did not answer, not refused


def _preview(*, target: cluster.Cluster, site: str, crds: Sequence[documents.Manifest],
            manifests: Sequence[documents.Manifest]) -> list[Preview]:
    """What rollout.run() would do to each object, in its order, changing nothing.

    `unchanged` when the live object already holds the manifest (as the rollout decides), else
    a server-side apply dry run says `created` or `configured`, or how it would fail. An
    object whose CRD or namespace this very rollout creates cannot be asked about; it is
    new, so `created`, with a note saying why.
    """
    live = dict(rollout.list_live(target=target, manifests=manifests, site=site))
    live.update(rollout.list_shared(target=target, crds=crds))
    # Kinds served once this rollout's CRDs are applied.
    new_kinds = {(s.api_version, s.kind) for crd in [*crds, *manifests]
                 for s in documents.served_kinds(crd)}
    new_namespaces = {m.name for m in manifests if (m.api_version, m.kind) == ("v1", "Namespace")}

    def dry_run(body: Mapping[str, Any], manager: str) -> cluster.Applied:
        """The dry run, retried on errors that can heal, as a real apply would be."""
        pause = threading.Event()
        for delay in rollout.RETRY_DELAYS:
            try:
                return target.apply(body, dry_run=True, field_manager=manager)
            except errors.ClusterError as exc:
                # A kind or namespace not there yet is answered below, not waited for.
                if not exc.retryable or isinstance(exc, errors.NotFoundError):
                    raise
                pause.wait(delay)
        return target.apply(body, dry_run=True, field_manager=manager)

    def one(manifest: documents.Manifest, *, wave: int | None) -> Preview:
        body = rollout.desired(manifest, site=site, shared=wave is None)
        ref = cluster.ObjectRef.of(body)
        # As the rollout applies: the site's manifests as its own field manager, crds/ as
        # the shared one; the site's objects still under the shared one as it migrates them.
        manager = contract.SHARED_FIELD_MANAGER if wave is None else contract.field_manager(site)
        try:
            ref = rollout.ref_of(target, manifest, site=site)
            current = live.get(ref)
            moved = managers.migrated_entries(current, site=site) \
                if current is not None and wave is not None else None
            if current is not None and moved is not None:
                current = {**current, "metadata": {**current["metadata"], "managedFields": moved}}
            if current is not None and drift.in_sync(desired=body, live=current,
                                                     manager=manager):
                return Preview(ref=ref, change=cluster.Change.UNCHANGED, wave=wave)
            if current is None:
                # As the rollout checks: an existing object that is not the site's (for
                # crds/, a CRD the reconciler did not apply).
                refusal = (policies.crd_adoption(manifest=manifest, live=target.get(ref),
                                                 ref=ref) if wave is None else
                           policies.adoption(manifest=manifest, live=target.get(ref),
                                             site=site, ref=ref))
                if refusal is not None:
                    return Preview(ref=ref, change=None, wave=wave, error=str(refusal))
            applied = dry_run(body, manager)
        except errors.NotFoundError as exc:
            if (manifest.api_version, manifest.kind) in new_kinds:
                note = "its CRD is created first"
            elif manifest.namespace in new_namespaces:
                note = f"its namespace {manifest.namespace} is created first"
            else:
                return Preview(ref=ref, change=None, wave=wave, error=str(exc))
            return Preview(ref=ref, change=cluster.Change.CREATED, wave=wave, note=note)
        except errors.ClusterError as exc:
            return Preview(ref=ref, change=None, wave=wave, error=str(exc),
                           transient=exc.retryable and not isinstance(exc, errors.NotFoundError))
        if current is not None and drift.unchanged_by(live=current, result=applied.live,
                                                      manager=manager):
            # The server normalizes what the manifest says: the sync writes nothing either.
            return Preview(ref=ref, change=cluster.Change.UNCHANGED, wave=wave)
        change = cluster.Change.CREATED if applied.created else cluster.Change.CONFIGURED
        return Preview(ref=applied.ref, change=change, wave=wave)

    found = [one(crd, wave=None) for crd in crds]
    for wave, items in rollout.plan_waves(manifests):
        found.extend(one(m, wave=wave) for m in items)
    return found


def _offline(*, repo: source.Source, site_bundle: documents.Bundle, decision: fence.Decision,
             current: state.SiteState,
             limits: bundle.Limits) -> tuple[list[ObjectPlan], list[PrunePlan], list[str]]:
    site = site_bundle.site
    recorded = {entry.id for entry in current.inventory}
    before, note = _last_rolled_out(repo=repo, current=current, limits=limits)
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
            if ref.inventory_id not in recorded:
                change = "created"
            elif before is not None and before.get(ref.inventory_id) == body:
                change = "unchanged"
            else:
                change = "configured"
            objects.append(ObjectPlan(ref=ref, change=change, wave=wave,
                                      location=manifest.location))
    held = inventory.held_ids(scope.ref(d.manifest) for d in decision.drops)
    prunes = [PrunePlan(entry=e) for e in _stale(current, objects=objects, held=held,
                                                 prune=site_bundle.intent.prune)]
    return objects, prunes, notes


def _stale(current: state.SiteState, *, objects: Sequence[ObjectPlan], held: frozenset[str],
           prune: bool) -> list[state.InventoryEntry]:
    """The inventory entries a successful rollout would prune, in prune order, computed
    by inventory.stale() as sync computes them: the site's planned objects (CRDs of crds/
    aside) are the applied set."""
    if not prune:
        return []
    applied = {o.ref.inventory_id for o in objects if o.wave is not None}
    return inventory.stale(current.inventory, applied=applied, held=held)


def _last_rolled_out(*, repo: source.Source, current: state.SiteState,
                     limits: bundle.Limits) -> tuple[dict[str, Any] | None, str]:
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
        last = bundle.load(tree=trees.GitTree(commit), site=current.site, limits=limits)
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
            if documents.is_crd(manifest):
                self._catalog.add(manifest)
        self._recorded = {(cluster.ObjectRef(e.api_version, e.kind, None, e.name).group,
                           e.kind, e.name): e.namespace for e in inventory}

    def ref(self, manifest: documents.Manifest) -> cluster.ObjectRef:
        ref = cluster.ObjectRef.of(manifest.body)
        if ref.namespace is not None:
            return ref
        group = ref.group
        namespaced = self._catalog.namespaced(group=group, kind=ref.kind)
        # Exact: a CRD group such as gateway.networking.k8s.io is not Kubernetes' own.
        if namespaced is None and kubekinds.serves_itself(group):
            namespaced = kubeschema.namespaced(group=group, kind=ref.kind)
        if namespaced is None:
            # A custom kind whose CRD is installed some other way: where the site applied
            # it before tells its scope; a new one is shown as written.
            return dataclasses.replace(
                ref, namespace=self._recorded.get((group, ref.kind, ref.name)))
        return dataclasses.replace(ref, namespace="default") if namespaced else ref
