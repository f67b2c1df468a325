"""Move a site's objects from the shared field manager to the site's own. Called by rollout.

Every site used to apply as `reconciler`; each now applies as `reconciler/<site>`
(contract.field_manager()). An object applied before keeps an Apply entry of `reconciler`
in `metadata.managedFields`: left there, it would keep owning every field, so a field
taken out of the manifest later would never be removed (server-side apply removes only
what no manager owns any more). As Flux's `ssa.ResourceManager` migrates its old managers,
the entry is renamed (merged into the site's own entry when there is one already) with a
JSON patch of `/metadata/managedFields`, guarded by a `test` of the resourceVersion read.
Only objects that carry this site's label (`reconciler.dev/site: <site>`) are migrated:
what another site applied stays that site's. The CRDs of `crds/`, shared by every site,
are still applied as `reconciler` and never migrated.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

from reconciler import cluster, contract, errors
from reconciler.site import abort as aborts

log = logging.getLogger("reconciler.site.managers")


def _legacy(entry: Any) -> bool:
    """The shared manager's Apply entry of the object itself (not of a subresource)."""
    return (isinstance(entry, Mapping) and entry.get("manager") == contract.LEGACY_FIELD_MANAGER
            and entry.get("operation") == "Apply" and not entry.get("subresource"))


def migrated_entries(live: Mapping[str, Any], *, site: str) -> list[dict[str, Any]] | None:
    """The object's managedFields with the shared manager's Apply entry renamed to the
    site's own (its fields merged into the site's entry when there is one), or None when
    there is nothing to migrate: no such entry, or the object is not this site's. Pure."""
    metadata = live.get("metadata") or {}
    if (metadata.get("labels") or {}).get(contract.LABEL_SITE) != site:
        return None
    entries = metadata.get("managedFields") or []
    if not any(_legacy(e) for e in entries):
        return None
    mine = contract.field_manager(site)
    out: list[dict[str, Any]] = []
    own: dict[str, Any] | None = None
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        if _legacy(entry) or (entry.get("manager") == mine and entry.get("operation") == "Apply"
                              and not entry.get("subresource")):
            if own is None:
                own = {**copy.deepcopy(dict(entry)), "manager": mine}
            else:
                own["fieldsV1"] = union(own.get("fieldsV1") or {}, entry.get("fieldsV1") or {})
                if entry.get("manager") == mine:  # the site's own entry has the last word
                    own["apiVersion"] = entry.get("apiVersion", own.get("apiVersion"))
                    own["time"] = entry.get("time", own.get("time"))
            continue
        out.append(copy.deepcopy(dict(entry)))
    assert own is not None  # there was a legacy entry
    out.append(own)
    return out


def union(left: Mapping[str, Any], right: Mapping[str, Any]) -> dict[str, Any]:
    """The union of two fieldsV1 sets: a tree of maps, merged key by key."""
    out = copy.deepcopy(dict(left))
    for key, value in right.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = union(out[key], value)
        else:
            out.setdefault(key, copy.deepcopy(value))
    return out


def migrate(*, target: cluster.Cluster, live: Mapping[str, Any], site: str,
            abort: aborts.Abort) -> Mapping[str, Any]:
    """The live object with its shared-manager entry migrated to the site's manager (one
    JSON patch through the abort gate), or `live` itself when there is nothing to do.

    When the patch fails (another writer moved the object since it was read), the object
    is returned as it was: the apply goes on, and the next pass migrates it."""
    entries = migrated_entries(live, site=site)
    if entries is None:
        return live
    ref = cluster.ObjectRef.of(live)
    version = (live.get("metadata") or {}).get("resourceVersion")
    operations: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "replace", "path": "/metadata/managedFields", "value": entries}]
    try:
        with abort.gate():
            patched = target.json_patch(ref, operations)
    except errors.AbortedError:
        raise
    except errors.ClusterError as exc:
        log.warning("%s: cannot move its fields from field manager %r to %r yet (retried "
                    "next pass): %s", ref, contract.LEGACY_FIELD_MANAGER,
                    contract.field_manager(site), exc)
        return live
    log.info("%s: fields of field manager %r moved to %r", ref, contract.LEGACY_FIELD_MANAGER,
             contract.field_manager(site))
    return patched
