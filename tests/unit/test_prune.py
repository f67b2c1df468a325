"""Prune: reverse order, only the site's labelled objects, and what keeps one."""

from __future__ import annotations

from reconciler import cluster, errors
from reconciler.site import abort, inventory, prune, state
from tests import fakes

SITE = "edge-sfo-01"


def test_prune_deletes_in_reverse_wave_order_and_only_labelled_objects():
    """Prune goes in reverse wave order, skips objects that lost the site label, and keeps
    objects marked reconciler.dev/prune: disabled."""
    target = fakes.FakeCluster()
    for name, labels, notes in (("w0", {"reconciler.dev/site": SITE}, {}),
                                      ("w9", {"reconciler.dev/site": SITE}, {}),
                                      ("foreign", {"reconciler.dev/site": "other"}, {}),
                                      ("kept", {"reconciler.dev/site": SITE},
                                       {"reconciler.dev/prune": "disabled"})):
        target.apply({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": name, "namespace": "ran", "labels": labels,
                                   "annotations": notes}})

    def entry(name: str, wave: int) -> state.InventoryEntry:
        ref = cluster.ObjectRef("v1", "ConfigMap", "ran", name)
        return state.InventoryEntry(id=ref.inventory_id, api_version="v1", kind="ConfigMap",
                                    namespace="ran", name=name, intent_id="i",
                                    applied_at=state.now(), wave=wave)

    stale = [entry("w0", 0), entry("w9", 9), entry("foreign", 5), entry("kept", 3),
             entry("gone", 1)]
    deleted: list[inventory.ObjectResult] = []
    prune.run(target=target, site=SITE, stale=stale, abort=abort.Abort(), into=deleted)
    assert [str(d.ref) for d in deleted] == ["ConfigMap/ran/w9", "ConfigMap/ran/w0"]
    left = {ref.name for ref in target.objects}
    assert left == {"foreign", "kept"}


def test_kept_says_why_an_object_is_not_pruned():
    """An object without the site label, or marked prune: disabled, is kept with the reason."""
    mine = {"metadata": {"labels": {"reconciler.dev/site": SITE}}}
    assert prune.kept(mine, site=SITE) == ""
    foreign = {"metadata": {"labels": {"reconciler.dev/site": "other"}}}
    assert prune.kept(foreign, site=SITE) == f"it no longer carries reconciler.dev/site={SITE}"
    disabled = {"metadata": {"labels": {"reconciler.dev/site": SITE},
                             "annotations": {"reconciler.dev/prune": "disabled"}}}
    assert prune.kept(disabled, site=SITE) == "reconciler.dev/prune is disabled"


def test_deletions_before_a_failure_are_kept_in_into():
    """A delete that fails midway leaves the deletions made before it in `into`, so the
    inventory can forget what is gone."""
    target = fakes.FakeCluster()
    for name in ("w9", "w0"):
        target.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": name, "namespace": "ran", "labels": {"reconciler.dev/site": SITE}}})
    real_delete = target.delete

    def delete(ref: cluster.ObjectRef) -> bool:
        if ref.name == "w0":
            raise errors.ClusterError("ConfigMap/ran/w0 delete failed: HTTP 500", retryable=True)
        return real_delete(ref)

    target.delete = delete  # type: ignore[method-assign]
    stale = [state.InventoryEntry(id=f"ran_{n}__ConfigMap", api_version="v1", kind="ConfigMap",
                                  namespace="ran", name=n, intent_id="i", applied_at=state.now(),
                                  wave=w) for n, w in (("w0", 0), ("w9", 9))]
    deleted: list[inventory.ObjectResult] = []
    try:
        prune.run(target=target, site=SITE, stale=stale, abort=abort.Abort(), into=deleted)
    except errors.ClusterError:
        pass
    else:
        raise AssertionError("the failing delete did not raise")
    assert [str(d.ref) for d in deleted] == ["ConfigMap/ran/w9"]


def test_an_object_of_an_unavailable_group_is_never_pruned():
    """An object whose group version the cluster cannot serve is neither read as gone nor
    deleted; the others are pruned, then prune fails naming it, the group and the reason."""
    target = fakes.FakeCluster()
    target.kinds[("metrics.k8s.io/v1beta1", "PodMetrics")] = True
    for api_version, kind, name in (("v1", "ConfigMap", "w0"),
                                    ("metrics.k8s.io/v1beta1", "PodMetrics", "upf")):
        target.apply({"apiVersion": api_version, "kind": kind, "metadata": {
            "name": name, "namespace": "ran", "labels": {"reconciler.dev/site": SITE}}})
    target.unavailable["metrics.k8s.io/v1beta1"] = "HTTP 503: service unavailable"
    stale = [state.InventoryEntry(
        id=cluster.ObjectRef(v, k, "ran", n).inventory_id, api_version=v, kind=k,
        namespace="ran", name=n, intent_id="i", applied_at=state.now(), wave=0)
        for v, k, n in (("v1", "ConfigMap", "w0"), ("metrics.k8s.io/v1beta1", "PodMetrics",
                                                      "upf"))]
    deleted: list[inventory.ObjectResult] = []
    try:
        prune.run(target=target, site=SITE, stale=stale, abort=abort.Abort(), into=deleted)
    except errors.GroupUnavailableError as exc:
        assert exc.retryable and exc.group_version == "metrics.k8s.io/v1beta1"
        assert "PodMetrics/ran/upf" in str(exc) and "service unavailable" in str(exc)
    else:
        raise AssertionError("prune did not say it left an object it could not see")
    assert [str(d.ref) for d in deleted] == ["ConfigMap/ran/w0"]
    assert ("delete", "PodMetrics/ran/upf") not in target.calls
    assert {ref.name for ref in target.objects} == {"upf"}
