"""Apply the accepted intent's manifests to the cluster, wave by wave. Called by reconcile.

This is the seam issue #4 grows into health gates: each wave is applied, recorded, and the
abort signal is checked before every apply and during every wait, so a newer intent stops
the rollout between any two requests.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reconciler import abort as aborts
from reconciler import bundle, cluster, contract, drift, errors, state

log = logging.getLogger("reconciler.rollout")

RETRY_DELAYS = (0.5, 1.0, 2.0)  # seconds between attempts at a retryable apply
CRD_ESTABLISH_TIMEOUT = 30.0
CRD_KIND = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")


@dataclasses.dataclass(frozen=True)
class ObjectResult:
    """What one apply did: the ChangeSet entry that feeds inventory, logs and reports."""

    ref: cluster.ObjectRef
    change: cluster.Change
    resource_version: str | None
    intent_id: str | None


@dataclasses.dataclass(frozen=True)
class Result:
    phase: state.Outcome
    results: tuple[ObjectResult, ...]
    waves: tuple[state.WaveRecord, ...]
    message: str = ""


def desired(manifest: bundle.Manifest, *, site: str) -> dict[str, Any]:
    """The object to apply: the manifest plus the labels every applied object carries."""
    body = copy.deepcopy(dict(manifest.body))
    metadata = dict(body.get("metadata") or {})
    labels = dict(metadata.get("labels") or {})
    labels[contract.LABEL_SITE] = site
    labels[contract.LABEL_MANAGED_BY] = contract.MANAGED_BY_VALUE
    metadata["labels"] = labels
    body["metadata"] = metadata
    return body


def plan_waves(manifests: Sequence[bundle.Manifest]) -> list[tuple[int, list[bundle.Manifest]]]:
    """Manifests grouped by wave, lowest first; manifest order is kept within a wave."""
    waves: dict[int, list[bundle.Manifest]] = {}
    for manifest in manifests:
        waves.setdefault(manifest.wave, []).append(manifest)
    return sorted(waves.items())


def wave_records(manifests: Sequence[bundle.Manifest]) -> tuple[state.WaveRecord, ...]:
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
    crds: Sequence[bundle.Manifest],
    manifests: Sequence[bundle.Manifest],
    abort: aborts.Abort,
    on_progress: Callable[[tuple[state.WaveRecord, ...]], None],
) -> Result:
    """Apply the CRDs, then each wave; stop at the first failed wave or on abort.

    Objects whose live state already holds every desired field are not written: they are
    reported unchanged. The live state is read with one list per kind, by the site label.
    """
    results: list[ObjectResult] = []
    live: dict[cluster.ObjectRef, Mapping[str, Any]] = {}
    records = list(wave_records(manifests))
    phase = state.Outcome.PROGRESSING
    message = ""
    try:
        if crds:
            live.update(_list_live(target=target, manifests=crds, site=site))
            for crd in crds:
                results.append(_apply_one(target=target, manifest=crd, site=site, abort=abort,
                                           live=live))
            _await_crds(target=target, crds=crds, abort=abort)
        live.update(_list_live(target=target, manifests=manifests, site=site))
        for index, (wave, items) in enumerate(plan_waves(manifests)):
            records[index] = dataclasses.replace(records[index], phase=state.WavePhase.APPLYING)
            on_progress(tuple(records))
            failures: list[str] = []
            for manifest in items:
                abort.check()
                try:
                    results.append(_apply_one(target=target, manifest=manifest, site=site,
                                              abort=abort, live=live))
                except errors.ClusterError as exc:
                    failures.append(str(exc))
            if failures:
                records[index] = dataclasses.replace(records[index], phase=state.WavePhase.FAILED)
                raise errors.ApplyError(f"wave {wave}: " + "; ".join(failures))
            records[index] = dataclasses.replace(records[index], phase=state.WavePhase.HEALTHY)
            on_progress(tuple(records))
        phase = state.Outcome.SUCCEEDED
    except errors.AbortedError as exc:
        phase, message = state.Outcome.ABORTED, str(exc)
    except errors.ReconcilerError as exc:
        phase, message = state.Outcome.FAILED, str(exc)
    return Result(phase=phase, results=tuple(results), waves=tuple(records), message=message)


def _key(target: cluster.Cluster, obj: Mapping[str, Any]) -> cluster.ObjectRef:
    """The object's ref, with the namespace a namespaced kind defaults to."""
    ref = cluster.ObjectRef.of(obj)
    if ref.namespace is None:
        try:
            namespaced = target.resource(api_version=ref.api_version, kind=ref.kind).namespaced
        except errors.NotFoundError:
            return ref
        if namespaced:
            return cluster.ObjectRef(ref.api_version, ref.kind, "default", ref.name)
    return ref


def _list_live(*, target: cluster.Cluster, manifests: Sequence[bundle.Manifest],
               site: str) -> dict[cluster.ObjectRef, Mapping[str, Any]]:
    """The site's live objects of every kind in `manifests`: one list per kind."""
    found: dict[cluster.ObjectRef, Mapping[str, Any]] = {}
    selector = f"{contract.LABEL_SITE}={site}"
    for api_version, kind in sorted({(m.api_version, m.kind) for m in manifests}):
        try:
            items = target.list(api_version=api_version, kind=kind, label_selector=selector)
        except errors.NotFoundError:
            continue  # a kind whose CRD is not served yet: nothing of it exists
        for item in items:
            found[cluster.ObjectRef.of(item)] = item
    return found


def _apply_one(
    *,
    target: cluster.Cluster,
    manifest: bundle.Manifest,
    site: str,
    abort: aborts.Abort,
    live: Mapping[cluster.ObjectRef, Mapping[str, Any]],
) -> ObjectResult:
    body = desired(manifest, site=site)
    current = live.get(_key(target, body))
    if current is not None and drift.in_sync(desired=body, live=current):
        abort.check()
        ref = cluster.ObjectRef.of(current)
        log.debug("%s unchanged", ref)
        return ObjectResult(ref=ref, change=cluster.Change.UNCHANGED,
                            resource_version=current.get("metadata", {}).get("resourceVersion"),
                            intent_id=manifest.intent_id)
    for attempt in range(len(RETRY_DELAYS) + 1):
        abort.check()
        try:
            applied = target.apply(body)
            break
        except errors.ClusterError as exc:
            if not exc.retryable or attempt == len(RETRY_DELAYS):
                raise
            log.warning("%s: %s; retrying in %.1fs", manifest.describe(), exc,
                        RETRY_DELAYS[attempt])
            if abort.wait(RETRY_DELAYS[attempt]):
                abort.check()
    change = cluster.Change.CREATED if applied.created else cluster.Change.CONFIGURED
    log.info("%s %s", applied.ref, change.value)
    return ObjectResult(ref=applied.ref, change=change,
                        resource_version=applied.resource_version,
                        intent_id=manifest.intent_id)


def _await_crds(*, target: cluster.Cluster, crds: Sequence[bundle.Manifest],
                abort: aborts.Abort) -> None:
    """Wait until every applied CRD's kind is served, so its objects can be applied."""
    kinds = []
    for crd in crds:
        if (crd.api_version, crd.kind) != CRD_KIND:
            continue
        spec = crd.body.get("spec") or {}
        group = spec.get("group", "")
        kind = (spec.get("names") or {}).get("kind", "")
        for version in spec.get("versions") or []:
            if version.get("served", True):
                kinds.append((f"{group}/{version.get('name')}", kind))
    waited = 0.0
    for api_version, kind in kinds:
        while True:
            try:
                target.resource(api_version=api_version, kind=kind)
                break
            except errors.NotFoundError:
                if waited >= CRD_ESTABLISH_TIMEOUT:
                    raise errors.ApplyError(
                        f"CRD for {kind} in {api_version} was applied but not served after "
                        f"{CRD_ESTABLISH_TIMEOUT:.0f}s"
                    ) from None
                if abort.wait(0.2):
                    abort.check()
                waited += 0.2
                target.refresh_discovery()
