"""The real Cluster adapter's verbs against a running API server."""

from __future__ import annotations

import pytest

from reconciler import cluster, errors, kube
from tests.e2e import aggregated
from tests.e2e.conftest import ClusterUnderTest, kubectl

pytestmark = pytest.mark.e2e

CM = {"apiVersion": "v1", "kind": "ConfigMap",
      "metadata": {"name": "adapter-check", "namespace": "default",
                   "labels": {"reconciler.dev/site": "adapter-test"}},
      "data": {"k": "v"}}


def test_apply_get_list_delete(any_cluster: ClusterUnderTest):
    """Apply creates (201) then finds no change; get, list by label and delete round-trip."""
    adapter = kube.connect(kubeconfig=any_cluster.kubeconfig)
    ref = cluster.ObjectRef.of(CM)
    try:
        adapter.delete(ref)
        first = adapter.apply(CM)
        again = adapter.apply(CM)
        assert first.created and not again.created
        assert again.resource_version == first.resource_version  # a no-op apply writes nothing
        live = adapter.get(ref)
        assert live is not None and live["data"] == {"k": "v"}
        managers = [m["manager"] for m in live["metadata"]["managedFields"]]
        assert "reconciler" in managers
        listed = adapter.list(api_version="v1", kind="ConfigMap",
                              label_selector="reconciler.dev/site=adapter-test")
        assert [o["metadata"]["name"] for o in listed] == ["adapter-check"]
        assert adapter.delete(ref) is True
        assert adapter.get(ref) is None
        assert adapter.delete(ref) is False
    finally:
        adapter.delete(ref)
        adapter.close()


def test_dry_run_apply_changes_nothing(any_cluster: ClusterUnderTest):
    """A dry-run apply returns the would-be object and stores nothing."""
    adapter = kube.connect(kubeconfig=any_cluster.kubeconfig)
    try:
        result = adapter.apply({**CM, "metadata": {**CM["metadata"], "name": "dry-run"}},
                               dry_run=True)
        assert result.live["data"] == {"k": "v"}
        names = [i["metadata"]["name"] for i in
                 kubectl(any_cluster, "get", "configmaps", "-n", "default", "-o", "json")["items"]]
        assert "dry-run" not in names
    finally:
        adapter.close()


def test_unknown_kind_is_a_clear_not_found(any_cluster: ClusterUnderTest):
    """A kind the server does not serve is NotFoundError naming the kind and hinting at CRDs."""
    adapter = kube.connect(kubeconfig=any_cluster.kubeconfig)
    try:
        with pytest.raises(errors.NotFoundError, match=r"'Widget'.*CRD"):
            adapter.apply({"apiVersion": "example.com/v1", "kind": "Widget",
                           "metadata": {"name": "w", "namespace": "default"}})
    finally:
        adapter.close()


def test_missing_namespace_is_reported(any_cluster: ClusterUnderTest):
    """Applying into a namespace that does not exist names the namespace."""
    adapter = kube.connect(kubeconfig=any_cluster.kubeconfig)
    try:
        with pytest.raises(errors.NotFoundError, match=r'ConfigMap/no-such-ns/x apply failed.*'
                                                       r'namespaces "no-such-ns" not found'):
            adapter.apply({**CM, "metadata": {"name": "x", "namespace": "no-such-ns"}})
    finally:
        adapter.close()


def test_an_unavailable_group_version_is_skipped_and_named(any_cluster: ClusterUnderTest):
    """A group version listed but answering 503 does not stop discovery: other kinds are
    served, and its own kinds raise GroupUnavailableError naming it and the server's reason."""
    with aggregated.unavailable_metrics(any_cluster):
        adapter = kube.connect(kubeconfig=any_cluster.kubeconfig)
        try:
            assert adapter.apply(CM).ref == cluster.ObjectRef.of(CM)
            with pytest.raises(errors.GroupUnavailableError) as caught:
                adapter.resource(api_version=aggregated.METRICS, kind="PodMetrics")
            with pytest.raises(errors.GroupUnavailableError):
                adapter.get(cluster.ObjectRef(aggregated.METRICS, "PodMetrics", "default", "p"))
        finally:
            adapter.delete(cluster.ObjectRef.of(CM))
            adapter.close()
    error = caught.value
    assert error.retryable and error.group_version == aggregated.METRICS
    assert str(error).startswith("kind 'PodMetrics' cannot be reached: the cluster lists "
                                 "metrics.k8s.io/v1beta1 but cannot serve it now: HTTP 503: "
                                 "service unavailable")
    assert "CRD" not in str(error)
    if any_cluster.local is None:  # a real aggregator says why, on the APIService
        assert ("APIService v1beta1.metrics.k8s.io not available: ServiceNotFound: "
                "service/metrics-server-not-running") in str(error)
