"""An unavailable group version: listed in discovery, answered with the aggregator's 503."""

from __future__ import annotations

from reconciler import localcluster
from tests.localcluster import conftest

METRICS = "metrics.k8s.io/v1beta1"


def listed(raw: conftest.Raw) -> list[str]:
    return [v["groupVersion"] for g in raw.request("GET", "/apis").json()["groups"]
            for v in g["versions"]]


def test_an_unavailable_group_version_is_listed_and_answers_503_as_plain_text(
        cluster: localcluster.LocalCluster, raw: conftest.Raw) -> None:
    """/apis and /apis/<group> list it; its document and every path under it answer 503
    `service unavailable` as plain text, as kube-apiserver's aggregator does."""
    cluster.faults.make_unavailable(METRICS)
    assert METRICS in listed(raw)
    group = raw.request("GET", "/apis/metrics.k8s.io").json()
    assert group["preferredVersion"]["groupVersion"] == METRICS
    for path in (f"/apis/{METRICS}", f"/apis/{METRICS}/namespaces/a/pods/b"):
        reply = raw.request("GET", path)
        assert (reply.status, reply.body) == (503, b"service unavailable\n")
        assert reply.headers["content-type"].startswith("text/plain")
    assert raw.request("GET", "/api/v1/namespaces").status == 200


def test_made_available_or_cleared_it_leaves_discovery(
        cluster: localcluster.LocalCluster, raw: conftest.Raw) -> None:
    """make_available() and clear() take the group version out again."""
    cluster.faults.make_unavailable(METRICS, message="backend down")
    assert raw.request("GET", f"/apis/{METRICS}").body == b"backend down\n"
    cluster.faults.make_available(METRICS)
    assert METRICS not in listed(raw)
    assert raw.request("GET", f"/apis/{METRICS}").status == 404
    cluster.faults.make_unavailable(METRICS)
    cluster.faults.clear()
    assert METRICS not in listed(raw)
