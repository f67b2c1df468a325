"""The site's object sets: applied, held and stale, their order, and the inventory merge."""

from __future__ import annotations

import pytest

from reconciler import cluster
from reconciler.site import inventory, state

C = cluster.Change


def ref(name: str, kind: str = "ConfigMap", namespace: str | None = "ran") -> cluster.ObjectRef:
    api = "v1" if kind in ("ConfigMap", "Namespace") else "telco.example.com/v1alpha1"
    return cluster.ObjectRef(api, kind, namespace, name)


def result(name: str, change: cluster.Change, *, intent: str | None = "i-2",
           kind: str = "ConfigMap", wave: int = 0) -> inventory.ObjectResult:
    return inventory.ObjectResult(ref=ref(name, kind), change=change, resource_version="1",
                                  intent_id=intent, wave=wave)


def entry(name: str, *, wave: int = 0, kind: str = "ConfigMap",
          intent: str = "i-1") -> state.InventoryEntry:
    r = ref(name, kind)
    return state.InventoryEntry(id=r.inventory_id, api_version=r.api_version, kind=kind,
                                namespace=r.namespace, name=name, intent_id=intent,
                                applied_at="2026-12-01T00:00:00.000000Z", wave=wave)


@pytest.mark.parametrize("kind", ["Namespace", "CustomResourceDefinition"])
def test_namespaces_and_crds_rank_first(kind: str):
    """Namespaces and CRDs come before every other kind of their wave."""
    assert inventory.kind_rank(kind) < inventory.kind_rank("ServiceAccount")
    assert inventory.kind_rank("Deployment") < inventory.kind_rank("WorkloadCluster")


def test_applied_ids_leave_out_crds_of_crds_folder_and_deletions():
    """Applied are the site's objects the step wrote or found in sync; not CRDs, not prunes."""
    results = [result("a", C.CREATED), result("b", C.UNCHANGED), result("c", C.CONFIGURED),
               result("crd", C.CREATED, intent=None), result("gone", C.DELETED)]
    assert inventory.applied_ids(results) == {ref(n).inventory_id for n in ("a", "b", "c")}


def test_stale_is_neither_applied_nor_held_in_prune_order():
    """Stale entries exclude applied and held ids and come in reverse wave, then kind order."""
    entries = [entry("kept"), entry("held"), entry("w0"), entry("ns", kind="Namespace"),
               entry("w5", wave=5), entry("nf", kind="NetworkFunction")]
    stale = inventory.stale(entries, applied={ref("kept").inventory_id},
                            held=inventory.held_ids([ref("held")]))
    assert [e.name for e in stale] == ["w5", "nf", "w0", "ns"]


def test_nothing_is_stale_when_everything_is_applied_or_held():
    """An inventory fully covered by applied and held ids prunes nothing."""
    entries = [entry("a"), entry("b")]
    assert inventory.stale(entries, applied={ref("a").inventory_id},
                           held={ref("b").inventory_id}) == []


def test_merge_puts_in_takes_out_and_keeps_only_when_told():
    """Merge replaces by id, removes deletions, and with keep_only drops everything else."""
    old = (entry("a", intent="i-1"), entry("b"), entry("c"))
    new_a = entry("a", intent="i-2")
    merged = inventory.merge(old, added=[new_a, entry("d")], deleted={ref("b").inventory_id})
    assert [(e.name, e.intent_id) for e in merged] == [("a", "i-2"), ("c", "i-1"), ("d", "i-1")]
    kept = inventory.merge(old, added=[new_a], deleted=(),
                           keep_only={ref("a").inventory_id, ref("c").inventory_id})
    assert [e.name for e in kept] == ["a", "c"]
    assert [e.id for e in merged] == sorted(e.id for e in merged)
