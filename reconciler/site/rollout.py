"""Roll the accepted intent's manifests out to the cluster, wave by wave. Called by pipeline.

Each wave: apply its objects (kind groups in order, each group concurrently, every apply
through the abort gate), then wait until all of them are healthy, one fails, or the health
timeout passes. Every wait uses the abort signal, so a newer intent stops the rollout at
once. After a successful rollout, `prune.run()` deletes what is no longer desired.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from reconciler import cluster, contract, errors
from reconciler.repo import documents
from reconciler.site import abort as aborts
from reconciler.site import drift, health, inventory, managers, state
from reconciler.site import policy as policies

log = logging.getLogger("reconciler.site.rollout")
PROGRESS_EVERY = 5.0  # seconds between the lines a health wait logs

RETRY_DELAYS = (0.5, 1.0, 2.0)  # seconds between attempts at a retryable apply
MAX_RETRY_AFTER = 60.0  # seconds: the most a server's Retry-After (429, 503) holds a retry
CRD_ESTABLISH_TIMEOUT = 30.0
POLL_INTERVAL = 0.25  # seconds between health reads while a wave waits
APPLY_CONCURRENCY = 4
REPLACE_DELETE_TIMEOUT = 120.0  # seconds an object deleted to be replaced may take to go


@dataclasses.dataclass(frozen=True)
class Failure:
    """An object whose apply failed, and the error that says why (naming the object)."""

    ref: cluster.ObjectRef
    error: str


@dataclasses.dataclass(frozen=True)
class Result:
    """How a rollout ended, with every object result and the record of every wave.

    `results` are the objects applied (or found unchanged), `failures` those whose apply
    failed: successes and failures of one batch are both reported.
    """

    phase: state.Outcome
    results: tuple[inventory.ObjectResult, ...]
    waves: tuple[state.WaveRecord, ...]
    message: str = ""
    failures: tuple[Failure, ...] = ()


def desired(manifest: documents.Manifest, *, site: str, shared: bool = False) -> dict[str, Any]:
    """The object to apply: the manifest plus the labels every applied object carries.

    A `shared` one (a CRD of crds/, which every site applies) gets no site label: two sites
    on one cluster would flip it back and forth (docs/policy.md)."""
    body = copy.deepcopy(dict(manifest.body))
    metadata = dict(body.get("metadata") or {})
    labels = dict(metadata.get("labels") or {})
    if not shared:
        labels[contract.LABEL_SITE] = site
    labels[contract.LABEL_MANAGED_BY] = contract.MANAGED_BY_VALUE
    metadata["labels"] = labels
    body["metadata"] = metadata
    return body


def plan_waves(
    manifests: Sequence[documents.Manifest],
) -> list[tuple[int, list[documents.Manifest]]]:
    """Manifests by wave, lowest first; within a wave by kind order, then by name.

    An object defined twice is applied as the later definition, in file order, as
    `kubectl apply` of the same files would leave it (validate reports it as `duplicate`):
    applying both would let the faster request win, and every pass re-apply the other."""
    waves: dict[int, list[documents.Manifest]] = {}
    for manifest in _last_definitions(manifests):
        waves.setdefault(manifest.wave, []).append(manifest)
    return [(wave, sorted(items, key=lambda m: (inventory.kind_rank(m.kind), m.name,
                                                m.namespace or "")))
            for wave, items in sorted(waves.items())]


def _last_definitions(manifests: Sequence[documents.Manifest]) -> list[documents.Manifest]:
    """Each object's last definition, in the original order."""
    last: dict[tuple[str, str, str, str], documents.Manifest] = {}
    for manifest in manifests:
        group = manifest.api_version.rpartition("/")[0]
        key = (group, manifest.kind, manifest.namespace or "", manifest.name)
        earlier = last.get(key)
        if earlier is not None:
            log.warning("%s is defined twice: %s is applied, %s is not", manifest.describe(),
                        manifest.location, earlier.location)
        last[key] = manifest
    kept = {id(m) for m in last.values()}
    return [m for m in manifests if id(m) in kept]


def wave_records(manifests: Sequence[documents.Manifest]) -> tuple[state.WaveRecord, ...]:
    """The pending record of every wave, before anything is applied."""
    return tuple(
        state.WaveRecord(wave=wave, phase=state.WavePhase.PENDING,
                         objects=tuple(m.describe() for m in items))
        for wave, items in plan_waves(manifests)
    )


def run(
    *,
    target: cluster.Cluster,
    site: str,
    crds: Sequence[documents.Manifest],
    manifests: Sequence[documents.Manifest],
    abort: aborts.Abort,
    on_progress: Callable[[tuple[state.WaveRecord, ...]], None],
    health_timeout: float = 600.0,
    poll_interval: float = POLL_INTERVAL,
    clock: Callable[[], float] = time.monotonic,  # injected by tests
    ran: Collection[str] = frozenset(),
    policy: policies.Policy = policies.DEFAULT,
) -> Result:
    """Apply the CRDs, then each wave and wait for it; stop at a failed wave or on abort.

    `ran` holds the inventory ids the site's record has as applied under the intent being
    rolled out. A Job among them that is gone from the cluster and sets
    `spec.ttlSecondsAfterFinished` finished and was deleted by its TTL: it is not run
    again (reported unchanged, with a note) and its wave does not wait for it.

    Objects whose live state already holds every desired field are not written: they are
    reported unchanged. The live state is read with one list per kind, by the site label.
    An object whose API group version the cluster cannot serve now (errors.
    GroupUnavailableError) fails alone: the rest of its wave is applied, then the wave
    fails naming it, and later waves do not start.
    """
    results: list[inventory.ObjectResult] = []
    failures: list[Failure] = []
    records = list(wave_records(manifests))
    live: dict[cluster.ObjectRef, Mapping[str, Any]] = {}

    def mark(index: int, phase: state.WavePhase) -> None:
        records[index] = dataclasses.replace(records[index], phase=phase)
        on_progress(tuple(records))

    try:
        if crds:
            live.update(list_shared(target=target, crds=crds))
            # No silent adoption of a CRD someone else installed (docs/policy.md).
            _check_adoption(target=target, manifests=crds, site=site, live=live,
                            abort=abort, failed=failures, policy=policy, shared=True)
            deferred = _apply_group(target=target, items=crds, site=site, abort=abort,
                                    live=live, wave=0, intent_bound=False, into=results,
                                    failed=failures, policy=policy)
            if deferred:
                raise errors.ApplyError("crds: " + "; ".join(deferred), retryable=True)
            _await_crds(target=target, crds=crds, abort=abort)
        live.update(list_live(target=target, manifests=manifests, site=site))
        # No silent adoption: an existing object that is not the site's fails the rollout
        # before its first wave, unless its manifest says `reconciler.dev/adopt: enabled`.
        _check_adoption(target=target, manifests=manifests, site=site, live=live,
                        abort=abort, failed=failures, policy=policy)
        for index, (wave, items) in enumerate(plan_waves(manifests)):
            mark(index, state.WavePhase.APPLYING)
            try:
                # Jobs that ran under this intent and were deleted by their TTL: not again.
                finished = _finished_jobs(target=target, items=items, site=site, live=live,
                                          ran=ran)
                unavailable: list[str] = []  # objects of a group version it cannot serve
                for group in _kind_groups(items):
                    unavailable += _apply_group(target=target, items=group, site=site,
                                                abort=abort, live=live, wave=wave,
                                                into=results, failed=failures,
                                                finished=finished, policy=policy)
                    if any(documents.is_crd(m) for m in group):
                        _await_crds(target=target, crds=group, abort=abort)
                        live.update(list_live(target=target, manifests=items, site=site))
                if unavailable:
                    raise errors.ApplyError(f"wave {wave}: " + "; ".join(unavailable),
                                            retryable=True)
                mark(index, state.WavePhase.WAITING)
                _await_healthy(target=target, items=items, site=site, wave=wave, abort=abort,
                               timeout=health_timeout, poll_interval=poll_interval, clock=clock,
                               finished=finished)
            except errors.AbortedError:
                raise
            except Exception:
                mark(index, state.WavePhase.FAILED)
                raise
            mark(index, state.WavePhase.HEALTHY)
        return Result(phase=state.Outcome.SUCCEEDED, results=tuple(results),
                      waves=tuple(records), failures=tuple(failures))
    except errors.AbortedError as exc:
        return Result(phase=state.Outcome.ABORTED, results=tuple(results),
                      waves=tuple(records), message=str(exc), failures=tuple(failures))
    except errors.ReconcilerError as exc:
        return Result(phase=state.Outcome.FAILED, results=tuple(results),
                      waves=tuple(records), message=str(exc), failures=tuple(failures))
    except Exception as exc:  # a bug or an unforeseen answer: failed, never ok
        log.exception("rollout failed unexpectedly")
        return Result(phase=state.Outcome.FAILED, results=tuple(results),
                      waves=tuple(records), message=f"internal error: {errors.describe(exc)}",
                      failures=tuple(failures))


def _check_adoption(*, target: cluster.Cluster, manifests: Sequence[documents.Manifest],
                    site: str, live: Mapping[cluster.ObjectRef, Mapping[str, Any]],
                    abort: aborts.Abort, failed: list[Failure],
                    policy: policies.Policy = policies.DEFAULT, shared: bool = False) -> None:
    """Raise ApplyError naming every object of `manifests` that resolves outside `policy`
    (rule `policy-namespace` or `policy-kind`: a last guard, pipeline.evaluate() refused
    what it could tell) or that exists but was not applied for `site`, unless its manifest
    adopts it (rule `adoption`, policy.adoption()). `shared`: the CRDs of crds/, which are
    the reconciler's when any site applied them (policy.crd_adoption()).

    `live` holds what the site's list found (its label; for crds/, the managed-by label):
    those are ours. Only the others are read, one GET each, so a pass over objects already
    ours costs no request; a kind not served yet has no object to adopt."""
    refused: list[Failure] = []
    for manifest in _last_definitions(manifests):
        abort.check()
        ref = _key(target, desired(manifest, site=site, shared=shared))
        outside = policies.outside(policy=policy, ref=ref)
        if outside:
            refused.append(Failure(ref=ref, error=f"{manifest.location.position}: {ref}: "
                                                  f"refused: {outside}"))
            log.error("%s", refused[-1].error)
            continue
        if ref in live:
            continue
        try:
            found = target.get(ref)
        except (errors.NotFoundError, errors.GroupUnavailableError):
            continue  # not served (yet), or not now: applying it says why, if anything
        refusal = (policies.crd_adoption(manifest=manifest, live=found, ref=ref) if shared
                   else policies.adoption(manifest=manifest, live=found, site=site, ref=ref))
        if refusal is not None:
            log.error("%s", refusal)
            refused.append(Failure(ref=ref, error=str(refusal)))
    if refused:
        failed.extend(refused)
        raise errors.ApplyError(f"{len(refused)} object(s) refused before any write of them: "
                                + "; ".join(f.error for f in refused[:5]))


def _finished_jobs(*, target: cluster.Cluster, items: Sequence[documents.Manifest], site: str,
                   live: Mapping[cluster.ObjectRef, Mapping[str, Any]],
                   ran: Collection[str]) -> frozenset[cluster.ObjectRef]:
    """The Jobs of a wave that ran under the intent being rolled out and were deleted by
    their TTL: recorded in `ran`, absent from the cluster, with `ttlSecondsAfterFinished`.

    The same intent carries the same manifest, so the Job that ran was this one; running
    it again would repeat work that is done. A new intent is a new request: its Jobs run.
    """
    found = set()
    for manifest in items:
        if not _is_ttl_job(manifest.body):
            continue
        ref = _key(target, desired(manifest, site=site))
        if ref.inventory_id in ran and ref not in live:
            found.add(ref)
    return frozenset(found)


def _is_ttl_job(obj: Mapping[str, Any]) -> bool:
    """A batch Job that its TTL controller deletes once it has finished."""
    ref = cluster.ObjectRef.of(obj)
    spec = obj.get("spec")
    return (ref.group == "batch" and ref.kind == "Job" and isinstance(spec, Mapping)
            and spec.get("ttlSecondsAfterFinished") is not None)


def _kind_groups(items: Sequence[documents.Manifest]) -> list[list[documents.Manifest]]:
    """Consecutive runs of the same kind rank: applied one run after the other."""
    groups: list[list[documents.Manifest]] = []
    for manifest in items:
        if groups and (inventory.kind_rank(groups[-1][0].kind)
                       == inventory.kind_rank(manifest.kind)):
            groups[-1].append(manifest)
        else:
            groups.append([manifest])
    return groups


def _apply_group(*, target: cluster.Cluster, items: Sequence[documents.Manifest], site: str,
                 abort: aborts.Abort, live: Mapping[cluster.ObjectRef, Mapping[str, Any]],
                 wave: int, into: list[inventory.ObjectResult], failed: list[Failure],
                 intent_bound: bool = True,
                 finished: Collection[cluster.ObjectRef] = frozenset(),
                 policy: policies.Policy = policies.DEFAULT) -> list[str]:
    """Apply a group concurrently (bounded), adding every success to `into` and every
    failure to `failed`, so both are recorded; then raise the abort, one ApplyError with
    all the group's errors, or the first unforeseen exception.

    When every failure is an unavailable group version (errors.GroupUnavailableError),
    nothing is raised: their errors are returned, and the rest of the wave goes on.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=APPLY_CONCURRENCY) as pool:
        futures = [(m, pool.submit(_apply_one, target=target, manifest=m, site=site,
                                   abort=abort, live=live, wave=wave,
                                   intent_bound=intent_bound, finished=finished,
                                   policy=policy))
                   for m in items]
        failures: list[str] = []
        unavailable = True  # every failure is of an unavailable group version
        aborted: errors.AbortedError | None = None
        unforeseen: Exception | None = None
        for manifest, future in futures:
            try:
                into.append(future.result())
            except errors.AbortedError as exc:
                aborted = exc
            except errors.ClusterError as exc:
                failure = _failure(target, manifest, site=site, error=exc)
                failed.append(failure)
                failures.append(failure.error)
                unavailable = unavailable and isinstance(exc, errors.GroupUnavailableError)
            except Exception as exc:
                unforeseen = unforeseen or exc
    if aborted is not None:
        raise aborted
    if unforeseen is not None:
        raise unforeseen
    if failures and not unavailable:
        raise errors.ApplyError(f"wave {wave}: " + "; ".join(failures))
    return failures


def _failure(target: cluster.Cluster, manifest: documents.Manifest, *, site: str,
             error: errors.ClusterError) -> Failure:
    """The failure of one object's apply, its error naming the object (an error from
    discovery names only the kind)."""
    body = desired(manifest, site=site)
    plain = cluster.ObjectRef.of(body)
    try:
        ref = _key(target, body)
    except errors.ClusterError:
        ref = plain
    text = str(error)
    if not text.startswith((f"{plain} ", f"{ref} ")):
        text = f"{ref} apply failed: {text}"
    return Failure(ref=ref, error=text)


def ref_of(target: cluster.Cluster, manifest: documents.Manifest, *,
           site: str) -> cluster.ObjectRef:
    """The ref of the object a manifest describes, namespace defaulted as the server does."""
    return _key(target, desired(manifest, site=site))


def possible_refs(target: cluster.Cluster, manifest: documents.Manifest, *, site: str,
                  scopes: Mapping[tuple[str, str], bool]) -> tuple[cluster.ObjectRef, ...]:
    """Every ref the object a manifest describes can end up with once applied: what the
    write-ahead inventory records before its first apply. Without a namespace, a kind the
    cluster serves has its scope; one it does not serve yet takes the scope its CRD in the
    revision gives (`scopes`, by (group, kind)); one whose scope nobody can tell now (its
    API group unavailable) is recorded both ways, so either object is known and prunable.
    """
    ref = cluster.ObjectRef.of(desired(manifest, site=site))
    if ref.namespace is not None:
        return (ref,)
    in_default = cluster.ObjectRef(ref.api_version, ref.kind, "default", ref.name)
    try:
        namespaced: bool | None = target.resource(api_version=ref.api_version,
                                                  kind=ref.kind).namespaced
    except (errors.NotFoundError, errors.GroupUnavailableError):
        namespaced = scopes.get((ref.group, ref.kind))
    if namespaced is None:
        return (ref, in_default)
    return (in_default,) if namespaced else (ref,)


def _key(target: cluster.Cluster, obj: Mapping[str, Any]) -> cluster.ObjectRef:
    """The object's ref, with the namespace a namespaced kind defaults to."""
    ref = cluster.ObjectRef.of(obj)
    if ref.namespace is None:
        try:
            namespaced = target.resource(api_version=ref.api_version, kind=ref.kind).namespaced
        except (errors.NotFoundError, errors.GroupUnavailableError):
            return ref  # as written: nobody can say whether the kind is namespaced
        if namespaced:
            return cluster.ObjectRef(ref.api_version, ref.kind, "default", ref.name)
    return ref


def list_shared(*, target: cluster.Cluster,
                crds: Iterable[documents.Manifest]) -> dict[cluster.ObjectRef, Mapping[str, Any]]:
    """The reconciler's live CRDs of crds/ (shared by every site, so found by the
    managed-by label, not a site's): one list."""
    return list_live(target=target, manifests=crds, site="",
                     selector=f"{contract.LABEL_MANAGED_BY}={contract.MANAGED_BY_VALUE}")


def list_live(*, target: cluster.Cluster, manifests: Iterable[documents.Manifest],
              site: str, selector: str = "") -> dict[cluster.ObjectRef, Mapping[str, Any]]:
    """The site's live objects of every kind in `manifests`: one list per kind (by the
    site's label, or by `selector` when given)."""
    found: dict[cluster.ObjectRef, Mapping[str, Any]] = {}
    selector = selector or f"{contract.LABEL_SITE}={site}"
    for api_version, kind in sorted({(m.api_version, m.kind) for m in manifests}):
        try:
            items = target.list(api_version=api_version, kind=kind, label_selector=selector)
        except errors.NotFoundError:
            continue  # a kind whose CRD is not served yet: nothing of it exists
        except errors.GroupUnavailableError as exc:
            # Nothing of it can be seen now; applying it will fail and name the reason.
            log.warning("cannot list %s: %s", kind, exc)
            continue
        for item in items:
            found[cluster.ObjectRef.of(item)] = item
    return found


def _apply_one(
    *,
    target: cluster.Cluster,
    manifest: documents.Manifest,
    site: str,
    abort: aborts.Abort,
    live: Mapping[cluster.ObjectRef, Mapping[str, Any]],
    wave: int,
    intent_bound: bool,
    finished: Collection[cluster.ObjectRef] = frozenset(),
    policy: policies.Policy = policies.DEFAULT,
) -> inventory.ObjectResult:
    body = desired(manifest, site=site, shared=not intent_bound)
    intent_id = manifest.intent_id if intent_bound else None
    key = _key(target, body)
    # A last guard: the ref the cluster resolves (its namespace defaulted as the server
    # does) is checked against the site's policy before the write, whatever said earlier.
    outside = policies.outside(policy=policy, ref=key)
    if outside:
        raise errors.ApplyError(f"{key} apply refused: outside the site's policy: {outside}")
    if key in finished:
        abort.check()
        note = (f"completed under intent {intent_id} and deleted after its TTL; "
                "not run again")
        log.info("%s %s", key, note)
        return inventory.ObjectResult(ref=key, change=cluster.Change.UNCHANGED,
                                      resource_version=None, intent_id=intent_id, wave=wave,
                                      note=note)
    current = live.get(key)
    # The site's manifests are applied as the site's own field manager; the CRDs of crds/,
    # which every site shares, as the shared one.
    manager = contract.field_manager(site) if intent_bound else contract.SHARED_FIELD_MANAGER
    if current is not None and intent_bound:
        current = managers.migrate(target=target, live=current, site=site, abort=abort)
    if current is not None and _unchanged(target=target, body=body, live=current, abort=abort,
                                          manager=manager):
        ref = cluster.ObjectRef.of(current)
        log.debug("%s unchanged", ref)
        return inventory.ObjectResult(ref=ref, change=cluster.Change.UNCHANGED,
                            resource_version=current.get("metadata", {}).get("resourceVersion"),
                            intent_id=intent_id, wave=wave)
    note = ""
    try:
        applied = _apply_retrying(target=target, body=body, manifest=manifest, abort=abort,
                                  manager=manager)
    except errors.ApplyError as exc:
        fields = errors.immutable_fields(exc.causes)
        if not fields:
            raise
        what = " and ".join(fields) + (" is" if len(fields) == 1 else " are") + " immutable"
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        if annotations.get(contract.ANNOTATION_REPLACE) != contract.REPLACE_ENABLED:
            raise errors.ApplyError(
                f"{key} apply failed: {what}; set {contract.ANNOTATION_REPLACE}: "
                f"{contract.REPLACE_ENABLED} on the manifest to delete and recreate it",
                status=exc.status, reason=exc.reason, details=exc.details,
                causes=exc.causes) from exc
        log.warning("%s: %s; deleting it to create it anew (%s: %s)", key, what,
                    contract.ANNOTATION_REPLACE, contract.REPLACE_ENABLED)
        _delete_and_wait(target=target, ref=key, abort=abort)
        applied = _apply_retrying(target=target, body=body, manifest=manifest, abort=abort,
                                  manager=manager)
        note = f"replaced: {what}"
    change = (cluster.Change.CREATED if applied.created and not note
              else cluster.Change.CONFIGURED)
    log.info("%s %s%s", applied.ref, change.value, f" ({note})" if note else "")
    return inventory.ObjectResult(ref=applied.ref, change=change,
                        resource_version=applied.resource_version, intent_id=intent_id,
                        wave=wave, note=note)


def _unchanged(*, target: cluster.Cluster, body: Mapping[str, Any],
               live: Mapping[str, Any], abort: aborts.Abort, manager: str) -> bool:
    """Whether applying `body` would leave the live object as it is, decided as
    server-side apply decides it (see drift): certain from the live object alone, or else
    asked of the server with a dry-run apply through the abort gate. A dry run the server
    refuses (a conflict, an invalid field) proves nothing: the real apply meets it."""
    abort.check()
    if drift.in_sync(desired=body, live=live, manager=manager):
        return True
    try:
        with abort.gate():
            result = target.apply(body, dry_run=True, field_manager=manager)
    except errors.ClusterError as exc:
        log.debug("%s dry run refused, applying: %s", cluster.ObjectRef.of(body), exc)
        return False
    return drift.unchanged_by(live=live, result=result.live, manager=manager)


def _apply_retrying(*, target: cluster.Cluster, body: Mapping[str, Any],
                    manifest: documents.Manifest, abort: aborts.Abort,
                    manager: str) -> cluster.Applied:
    """One object's server-side apply through the abort gate: retried when a retry can
    help, forced once when only imperative edits conflict with it."""
    force = False
    for attempt in range(len(RETRY_DELAYS) + 1):
        try:
            with abort.gate():
                return target.apply(body, force=force, field_manager=manager)
        except errors.ConflictError as exc:
            editors = _imperative_editors(target, body, exc)
            if force or not editors:
                raise
            # Fields we applied were changed out of band by imperative edits (kubectl
            # edit/patch): that is drift, and Git wins. Another *applier* stays a conflict.
            log.warning("%s: taking back fields changed out of band by %s",
                        manifest.describe(), ", ".join(editors))
            force = True
        except errors.ClusterError as exc:
            if not exc.retryable or attempt == len(RETRY_DELAYS):
                raise
            # At least as long as the server asked (a 429's or 503's Retry-After), capped.
            delay = max(RETRY_DELAYS[attempt], min(exc.retry_after or 0.0, MAX_RETRY_AFTER))
            log.warning("%s: %s; retrying in %.1fs%s", manifest.describe(), exc, delay,
                        " (the server's Retry-After)" if delay > RETRY_DELAYS[attempt] else "")
            if abort.wait(delay):
                abort.check()
    raise AssertionError("unreachable: the last attempt returns or raises")


def _delete_and_wait(*, target: cluster.Cluster, ref: cluster.ObjectRef,
                     abort: aborts.Abort) -> None:
    """Delete an object to replace it: foreground, so its dependents (a Job's pods) go
    first, through the abort gate; then wait, on the abort signal, until it is gone."""
    with abort.gate():
        target.delete(ref, foreground=True)
    waited = 0.0
    while target.get(ref) is not None:
        if waited >= REPLACE_DELETE_TIMEOUT:
            raise errors.ApplyError(
                f"{ref} apply failed: deleted to replace it, but still there after "
                f"{REPLACE_DELETE_TIMEOUT:.0f}s (a finalizer, or dependents not deleted yet)",
                retryable=True)
        if abort.wait(POLL_INTERVAL):
            abort.check()
        waited += POLL_INTERVAL


def _imperative_editors(target: cluster.Cluster, body: Mapping[str, Any],
                        conflict: errors.ConflictError) -> list[str]:
    """The managers a conflict names, when every one of them edited with Update (not Apply).

    Empty when any of them is another applier, or the object cannot be read.
    """
    names = sorted(set(conflict.managers))
    if not names:
        return []
    try:
        live = target.get(cluster.ObjectRef.of(body))
    except errors.ClusterError:
        return []
    entries = ((live or {}).get("metadata") or {}).get("managedFields") or []
    operations = {(e.get("manager"), e.get("operation")) for e in entries}
    if all((name, "Update") in operations and (name, "Apply") not in operations
           for name in names):
        return names
    return []


def check_kinds(*, target: cluster.Cluster, crds: Sequence[documents.Manifest],
                manifests: Sequence[documents.Manifest]) -> None:
    """Refuse a revision with a kind the cluster does not serve and no CRD of the revision
    defines, before anything of it is applied (rule `unknown-kind`): found mid-rollout, it
    would fail its wave after the earlier waves were written. Discovery is read again once
    before a kind is called unknown. A group the cluster lists but cannot serve now is left
    to the apply, which names the reason. Raises ValidationError naming each manifest."""
    defined = {(served.api_version, served.kind) for crd in (*crds, *manifests)
               for served in documents.served_kinds(crd)}

    def unknown() -> list[documents.Manifest]:
        found = []
        for (api_version, kind), manifest in sorted(kinds.items()):
            try:
                target.resource(api_version=api_version, kind=kind)
            except errors.NotFoundError:
                found.append(manifest)
            except errors.GroupUnavailableError:
                continue
        return found

    kinds = {(m.api_version, m.kind): m for m in manifests
             if (m.api_version, m.kind) not in defined}
    missing = unknown()
    if missing:
        target.refresh_discovery()
        missing = unknown()
    if missing:
        found = [f"{m.location}: {m.describe()}: kind {m.kind!r} of {m.api_version!r} is not "
                 "served by the cluster nor defined by a CRD of the revision "
                 "[unknown-kind]" for m in missing]
        raise errors.ValidationError(
            f"{len(found)} kind(s) unknown, nothing applied: " + "; ".join(found[:5]),
            findings=found)


def _await_crds(*, target: cluster.Cluster, crds: Sequence[documents.Manifest],
                abort: aborts.Abort) -> None:
    """Wait until every applied CRD's kind is served, so its objects can be applied."""
    kinds = [(s.api_version, s.kind) for crd in crds for s in documents.served_kinds(crd)]
    waited = 0.0
    for api_version, kind in kinds:
        while True:
            try:
                target.resource(api_version=api_version, kind=kind)
                break
            except errors.NotFoundError as exc:
                if waited >= CRD_ESTABLISH_TIMEOUT:
                    raise errors.ApplyError(
                        f"CRD for {kind} in {api_version} was applied but not served after "
                        f"{CRD_ESTABLISH_TIMEOUT:.0f}s"
                    ) from exc
                if abort.wait(0.2):
                    abort.check()
                waited += 0.2
                target.refresh_discovery()


def _await_healthy(*, target: cluster.Cluster, items: Sequence[documents.Manifest], site: str,
                   wave: int, abort: aborts.Abort, timeout: float, poll_interval: float,
                   clock: Callable[[], float],
                   finished: Collection[cluster.ObjectRef] = frozenset()) -> None:
    """Wait until every object of the wave is healthy; FAILED or a timeout is an error.
    The `finished` Jobs (done, and deleted by their TTL) are not waited for."""
    wanted = {ref: m for m in items
              if (ref := _key(target, desired(m, site=site))) not in finished}
    deadline = clock() + timeout
    reported = clock()  # a progress line every PROGRESS_EVERY seconds of waiting
    while True:
        abort.check()
        live = list_live(target=target, manifests=items, site=site)
        verdicts = {ref: (health.assess(live[ref]) if ref in live else
                          health.Health(health.Status.PROGRESSING, "not found yet"))
                    for ref in wanted}
        failed = {ref: h for ref, h in verdicts.items() if h.status is health.Status.FAILED}
        if failed:
            raise errors.ApplyError(f"wave {wave} failed: " + "; ".join(
                f"{ref}: {h.message}" for ref, h in sorted(failed.items())))
        waiting = {ref: h for ref, h in verdicts.items() if h.status is not health.Status.HEALTHY}
        if not waiting:
            return
        if clock() >= deadline:
            raise errors.ApplyError(
                f"wave {wave} not healthy after {timeout:.0f}s: " + "; ".join(
                    f"{ref}: {h.message or h.status.value}" for ref, h in sorted(waiting.items())))
        if clock() - reported >= PROGRESS_EVERY:
            reported = clock()
            log.info("wave %d: waiting on %d object(s), %.0fs left: %s", wave, len(waiting),
                     deadline - reported, "; ".join(f"{ref}: {h.message or h.status.value}"
                                                    for ref, h in sorted(waiting.items())))
        if abort.wait(poll_interval):
            abort.check()
