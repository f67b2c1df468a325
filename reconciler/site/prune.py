"""Delete what the site no longer desires, after a successful rollout. Called by pipeline.

Reverse wave order, then reverse kind order (inventory.prune_order). Only an object that
still carries the site's label is deleted; `reconciler.dev/prune: disabled` keeps one, and
an object already gone is skipped. An object whose kind cannot be seen (its API group
version is unavailable) is never deleted: it stays in the inventory, and prune fails once
the rest is done. Nor is an object outside the site's policy (policy.outside()). Every
delete passes the abort gate.

run() returns the ids of the objects it kept that stay the site's, so the inventory keeps
them and a later prune (a loosened policy, the annotation taken off) still deletes them:
one outside the policy, one with `reconciler.dev/prune: disabled`. One that no longer
carries the site's label is not the site's any more, and one already gone is nothing:
both leave the inventory.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler import cluster, contract, errors
from reconciler.site import abort as aborts
from reconciler.site import inventory, state
from reconciler.site import policy as policies

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
        abort: aborts.Abort, into: list[inventory.ObjectResult],
        policy: policies.Policy = policies.DEFAULT) -> frozenset[str]:
    """Delete the `stale` objects that are still the site's, adding each deletion to `into`
    as it happens, so what was deleted before an error or an abort is recorded. An object
    outside the site's `policy` (a denied namespace or kind) is never deleted. Returns the
    inventory ids of the objects kept that stay the site's: those outside the policy, so
    that loosening it later lets a prune delete them. An object no longer labelled the
    site's, or marked `reconciler.dev/prune: disabled`, is let go of (not returned).

    Objects of an unavailable API group version are skipped; after the others, a
    GroupUnavailableError names them, so the pass fails and the inventory keeps them for a
    later prune.
    """
    unseen: list[tuple[cluster.ObjectRef, errors.GroupUnavailableError]] = []
    keep: set[str] = set()
    for entry in inventory.prune_order(stale):
        abort.check()
        ref = ref_of(entry)
        outside = policies.outside(policy=policy, ref=ref)
        if outside:
            # Not read either: the policy says hands off. Kept in the inventory, so
            # loosening the policy later lets a prune delete it.
            log.warning("not pruning %s: outside the site's policy: %s", ref, outside)
            keep.add(entry.id)
            continue
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
            # Let go of: an object that no longer carries the site's label is not the
            # site's; one whose manifest said `prune: disabled` is left on the cluster
            # and forgotten, as Flux forgets it (else every pass would warn about it).
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
    return frozenset(keep)
