"""The site's objects: what one step did to each, their order, and the sets prune works on.

Called by rollout (the ChangeSet entry and the apply order), state (the inventory after a
rollout), prune (its order) and the manager's plan. Pure logic, no I/O: the applied, held
and stale sets are computed here and nowhere else, so `sync` and `plan` cannot disagree
on what a successful rollout keeps and deletes.

* **applied**: the objects a rollout applied for the accepted intent (CRDs from `crds/`,
  shared by every site, are never a site's);
* **held**: the objects whose manifests the fence dropped: neither applied nor pruned;
* **stale**: the inventory entries that are neither, which a successful rollout prunes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Sequence
from typing import Protocol, TypeVar

from reconciler import cluster

# Within a wave, kinds go in this order; custom resources (anything unlisted) go last.
# Prune deletes in the reverse order.
_KIND_ORDER = {kind: rank for rank, kind in enumerate((
    "Namespace", "CustomResourceDefinition", "ServiceAccount", "Role", "ClusterRole",
    "RoleBinding", "ClusterRoleBinding", "ConfigMap", "Secret", "Service",
    "PersistentVolumeClaim", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job",
    "CronJob", "Pod",
))}
_CUSTOM_RANK = len(_KIND_ORDER)


@dataclasses.dataclass(frozen=True)
class ObjectResult:
    """What one step did to one object: the ChangeSet entry that feeds inventory and logs."""

    ref: cluster.ObjectRef
    change: cluster.Change
    resource_version: str | None
    intent_id: str | None  # None for the CRDs of crds/: outside every site's inventory
    wave: int = 0
    note: str = ""  # why a step did what it did, when that is not plain (a finished Job)


class Entry(Protocol):
    """What prune and applied_under() need of an inventory entry (state.InventoryEntry is
    one)."""

    @property
    def id(self) -> str: ...
    @property
    def wave(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def intent_id(self) -> str: ...
    @property
    def pending(self) -> bool: ...


E = TypeVar("E", bound=Entry)


def kind_rank(kind: str) -> int:
    """Where `kind` goes within a wave: namespaces and CRDs first, custom resources last."""
    return _KIND_ORDER.get(kind, _CUSTOM_RANK)


def applied_ids(results: Iterable[ObjectResult]) -> frozenset[str]:
    """Inventory ids of the site's objects that `results` applied (not deleted, not CRDs)."""
    return frozenset(r.ref.inventory_id for r in results
                     if r.intent_id is not None and r.change is not cluster.Change.DELETED)


def applied_under(entries: Iterable[E], *, intent_id: str) -> frozenset[str]:
    """Inventory ids of the entries recorded as applied under `intent_id`: what the rollout
    of that same intent already ran (a finished Job whose TTL deleted it is not run again).
    An entry written ahead (pending) was not known to be applied, so it is not among them."""
    return frozenset(e.id for e in entries if e.intent_id == intent_id and not e.pending)


def held_ids(refs: Iterable[cluster.ObjectRef]) -> frozenset[str]:
    """Inventory ids of the objects whose manifests were dropped: kept as they are."""
    return frozenset(ref.inventory_id for ref in refs)


def stale(entries: Iterable[E], *, applied: Collection[str],
                    held: Collection[str]) -> list[E]:
    """The entries a successful rollout prunes, in prune order: neither applied nor held."""
    return prune_order(e for e in entries if e.id not in applied and e.id not in held)


def prune_order(entries: Iterable[E]) -> list[E]:
    """Reverse wave order, then reverse kind order: the order prune deletes in."""
    return sorted(entries, key=lambda e: (e.wave, kind_rank(e.kind), e.name), reverse=True)


def merge(entries: Sequence[E], *, added: Iterable[E], deleted: Collection[str],
                    keep_only: Collection[str] | None = None) -> tuple[E, ...]:
    """`entries` with `added` put in (replacing the same id) and `deleted` taken out; with
    `keep_only`, only those ids stay (after a successful prune). Sorted by id."""
    by_id = {entry.id: entry for entry in entries}
    by_id.update((entry.id, entry) for entry in added)
    for key in deleted:
        by_id.pop(key, None)
    if keep_only is not None:
        by_id = {key: entry for key, entry in by_id.items() if key in keep_only}
    return tuple(by_id[key] for key in sorted(by_id))
