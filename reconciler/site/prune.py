"""Delete what the site no longer desires, after a successful rollout. Called by pipeline.

Reverse wave order, then reverse kind order (inventory.prune_order). Only an object that
still carries the site's label is deleted; `reconciler.dev/prune: disabled` keeps one, and
an object already gone is skipped. An object whose kind cannot be seen (its API group
version is unavailable) is never deleted: it stays in the inventory, and prune fails once
the rest is done. Every delete passes the abort gate.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler import cluster, contract, errors
from reconciler.site import abort as aborts
from reconciler.site import inventory, state

log = logging.getLogger("reconciler.site.prune")


def kept(live: Mapping[str, Any], *, site: str) -> str:
    """Why a live object prune would otherwise delete is kept; empty when it is not."""
    meta = live.get("metadata") or {}
    if (meta.get("labels") or {}).get(contract.LABEL_SITE) != site:
        return f"it no longer carries {contract.LABEL_SITE}={site}"
    if (meta.get("annotations") or {}).get(contract.ANNOTATION_PRUNE) == "disabled":
        return f"{contract.ANNOTATION_PRUNE} is disabled"
    return ""


def ref_of(entry: state.InventoryEntry) -> cluster.ObjectRef:
    """The object an inventory entry names."""
    return cluster.ObjectRef(entry.api_version, entry.kind, entry.namespace, entry.name)


def run(*, target: cluster.Cluster, site: str, stale: Sequence[state.InventoryEntry],
        abort: aborts.Abort, into: list[inventory.ObjectResult]) -> None:
    """Delete the `stale` objects that are still the site's, adding each deletion to `into`
    as it happens, so what was deleted before an error or an abort is recorded.

    Objects of an unavailable API group version are skipped; after the others, a
    GroupUnavailableError names them, so the pass fails and the inventory keeps them for a
    later prune.
    """
    unseen: list[tuple[cluster.ObjectRef, errors.GroupUnavailableError]] = []
    for entry in inventory.prune_order(stale):
        abort.check()
        ref = ref_of(entry)
        try:
            live = target.get(ref)
        except errors.GroupUnavailableError as exc:
            # Its kind exists and may hold the object; nobody can see it now.
            log.warning("not pruning %s: %s", ref, exc)
            unseen.append((ref, exc))
            continue
        except errors.NotFoundError:
            live = None  # its kind is gone with its CRD: so is the object
        if live is None:
            continue
        reason = kept(live, site=site)
        if reason:
            log.warning("not pruning %s: %s", ref, reason)
            continue
        with abort.gate():
            gone = target.delete(ref)
        if gone:
            log.info("%s deleted", ref)
            into.append(inventory.ObjectResult(
                ref=ref, change=cluster.Change.DELETED, resource_version=None,
                intent_id=entry.intent_id, wave=entry.wave))
    if unseen:
        first = unseen[0][1]
        raise errors.GroupUnavailableError(
            "not pruned, their API group version is unavailable (kept in the inventory for "
            "a later pass): " + "; ".join(f"{ref}: {exc}" for ref, exc in unseen),
            group_version=first.group_version, why=first.why)
