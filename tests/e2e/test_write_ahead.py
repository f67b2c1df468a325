"""The write-ahead inventory through the real adapter: the object a killed rollout may
have created is known under the name the server gives it, namespace defaulting included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler import cluster, kube
from reconciler.site import pipeline
from tests import gitrepo
from tests.e2e.conftest import ClusterUnderTest
from tests.unit import test_write_ahead as wa

pytestmark = pytest.mark.e2e

SITE = wa.SITE
CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.wa.example.com
  annotations:
    reconciler.dev/intent-id: {iid}
spec:
  group: wa.example.com
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"""
# No namespace: the server puts it in `default`, which only the CRD's scope can tell.
WIDGET = """apiVersion: wa.example.com/v1
kind: Widget
metadata:
  name: w1
  annotations:
    reconciler.dev/intent-id: {iid}
    reconciler.dev/wave: "1"
spec: {{size: 1}}
"""
WIDGET_REF = cluster.ObjectRef("wa.example.com/v1", "Widget", "default", "w1")


def test_a_custom_resource_of_a_crd_new_in_the_revision_is_never_orphaned(
        local_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path) -> None:
    """Killed right after applying a namespace-less custom resource whose CRD the same
    revision brings, then superseded by an intent without it: the newer intent's success
    prunes it (the write-ahead entry named it in `default`, as the server placed it)."""
    store = wa.DyingStore(state_dir=tmp_path / "state", site=SITE)
    options = pipeline.Options(url=remote.url, site=SITE, cache_dir=tmp_path / "cache")
    adapter = kube.connect(kubeconfig=local_cluster.kubeconfig)

    def sync() -> pipeline.SyncResult:
        with store.lock():
            return pipeline.sync_once(options=options, store=store, target=adapter)

    try:
        assert sync().ok
        manifests = remote.work / "sites" / SITE / "manifests"
        gitrepo.restamp(remote, site=SITE, new_id="intent-2", sequence=2)
        (manifests / "40-crd.yaml").write_text(CRD.format(iid="intent-2"))
        (manifests / "50-widget.yaml").write_text(WIDGET.format(iid="intent-2"))
        remote.commit_and_push("Intent 2: a CRD and a Widget without a namespace")
        applying = adapter.apply

        def apply_then_die(obj: Any, **options_: Any) -> cluster.Applied:
            applied = applying(obj, **options_)
            if not options_.get("dry_run") and obj.get("kind") == "Widget":
                store.dead = True
                raise wa.Killed("killed after the Widget's apply")
            return applied

        adapter.apply = apply_then_die  # type: ignore[method-assign]
        with pytest.raises(wa.Killed):
            sync()
        adapter.apply = applying  # type: ignore[method-assign]
        assert adapter.get(WIDGET_REF) is not None
        store = wa.DyingStore(state_dir=tmp_path / "state", site=SITE)  # a new process
        pending = {(e.kind, e.namespace, e.name) for e in store.load().inventory if e.pending}
        assert ("Widget", "default", "w1") in pending
        (manifests / "50-widget.yaml").unlink()
        gitrepo.restamp(remote, site=SITE, new_id="intent-3", sequence=3)
        remote.commit_and_push("Intent 3: no Widget")
        result = sync()
        assert result.ok, result.message
        assert adapter.get(WIDGET_REF) is None, "the superseded intent's Widget was pruned"
    finally:
        adapter.close()
