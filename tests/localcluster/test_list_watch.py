"""Lists with label and field selectors, and watches, through raw HTTP and the official client."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse

import kubernetes
import pytest

from reconciler import localcluster
from reconciler.localcluster import store
from tests.localcluster import conftest

CM = conftest.CM_PATH


@pytest.fixture
def labelled(raw: conftest.Raw) -> conftest.Raw:
    """Four ConfigMaps with varied labels in default, one in another namespace."""
    for name, labels in (("a", {"app": "x", "tier": "web"}), ("b", {"app": "y"}),
                         ("c", {"app": "z", "tier": "db"}), ("d", {})):
        reply = raw.request("POST", CM, {"metadata": {"name": name, "labels": labels}})
        assert reply.status == 201
    raw.request("POST", "/api/v1/namespaces", {"metadata": {"name": "edge"}})
    raw.request("POST", "/api/v1/namespaces/edge/configmaps",
                {"metadata": {"name": "e", "labels": {"app": "x"}}})
    return raw


def names(raw: conftest.Raw, query: str, path: str = CM) -> list[str]:
    """The names a list with this query answers."""
    reply = raw.request("GET", f"{path}?{query}")
    assert reply.status == 200, reply.body
    return [item["metadata"]["name"] for item in reply.json()["items"]]


@pytest.mark.parametrize(("selector", "expected"), [
    ("app=x", ["a"]),
    ("app==x", ["a"]),
    ("app!=x", ["b", "c", "d"]),
    ("app in (x,y)", ["a", "b"]),
    ("app notin (x,y)", ["c", "d"]),
    ("tier", ["a", "c"]),
    ("!tier", ["b", "d"]),
    ("app,tier=db", ["c"]),
])
def test_label_selector_operators(labelled: conftest.Raw, selector: str,
                                  expected: list[str]) -> None:
    """Each label selector operator selects what a real server selects."""
    assert names(labelled, f"labelSelector={urllib.parse.quote(selector)}") == expected


def test_malformed_label_selector_is_a_bad_request(labelled: conftest.Raw) -> None:
    """A selector that does not parse is 400 BadRequest."""
    reply = labelled.request("GET", f"{CM}?labelSelector=app%20in%20x")
    assert reply.status == 400
    assert reply.json()["reason"] == "BadRequest"


def test_field_selectors_and_all_namespace_lists(labelled: conftest.Raw) -> None:
    """metadata.name/metadata.namespace select, and /api/v1/configmaps spans namespaces."""
    assert names(labelled, "fieldSelector=metadata.name%3Db") == ["b"]
    assert names(labelled, "fieldSelector=metadata.name!%3Db") == ["a", "c", "d"]
    assert names(labelled, "labelSelector=app%3Dx", "/api/v1/configmaps") == ["a", "e"]
    assert names(labelled, "fieldSelector=metadata.namespace%3Dedge",
                 "/api/v1/configmaps") == ["e"]
    unsupported = labelled.request("GET", f"{CM}?fieldSelector=data.x%3D1")
    assert unsupported.status == 400


def test_list_kind_and_resource_version(labelled: conftest.Raw) -> None:
    """A list is `<Kind>List` with the current resourceVersion and kind-less items."""
    listing = labelled.request("GET", CM).json()
    assert listing["kind"] == "ConfigMapList"
    assert listing["apiVersion"] == "v1"
    assert int(listing["metadata"]["resourceVersion"]) >= 5
    assert "kind" not in listing["items"][0]


def test_limit_and_continue_page_through(labelled: conftest.Raw) -> None:
    """limit returns a continue token that pages through the rest."""
    first = labelled.request("GET", f"{CM}?limit=3").json()
    assert len(first["items"]) == 3
    assert first["metadata"]["remainingItemCount"] == 1
    token = first["metadata"]["continue"]
    assert names(labelled, f"limit=3&continue={token}") == ["d"]


def test_core_client_lists_with_a_label_selector(
        labelled: conftest.Raw, api_client: kubernetes.client.ApiClient) -> None:
    """CoreV1Api lists across namespaces with a selector."""
    core = kubernetes.client.CoreV1Api(api_client)
    listed = core.list_config_map_for_all_namespaces(label_selector="app=x")
    assert sorted(i.metadata.name for i in listed.items) == ["a", "e"]


def test_watch_from_a_resource_version_sees_later_changes(
        raw: conftest.Raw, api_client: kubernetes.client.ApiClient) -> None:
    """watch.Watch().stream from a list's resourceVersion yields what happened after it."""
    raw.request("POST", CM, {"metadata": {"name": "before"}})
    core = kubernetes.client.CoreV1Api(api_client)
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    raw.request("POST", CM, {"metadata": {"name": "after"}})
    raw.request("PATCH", f"{CM}/after", {"data": {"k": "v"}},
                content_type="application/merge-patch+json")
    raw.request("DELETE", f"{CM}/after")
    watcher = kubernetes.watch.Watch()
    seen = []
    for event in watcher.stream(core.list_namespaced_config_map, "default",
                                resource_version=rv, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            watcher.stop()
    assert seen == [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "after")]


def test_watch_without_resource_version_starts_with_existing_objects(
        raw: conftest.Raw) -> None:
    """A watch without resourceVersion first sends ADDED for what exists, then stops on time."""
    raw.request("POST", CM, {"metadata": {"name": "a"}})
    started = time.monotonic()
    reply = raw.request("GET", f"{CM}?watch=1&timeoutSeconds=1")
    assert time.monotonic() - started >= 0.9
    assert reply.headers.get("transfer-encoding") == "chunked"
    events = [json.loads(line) for line in reply.body.splitlines() if line]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a")]
    assert events[0]["object"]["kind"] == "ConfigMap"


def test_watch_selector_turns_relabel_into_deleted(raw: conftest.Raw,
                                                   cluster: localcluster.LocalCluster) -> None:
    """A label change out of a watch's selector reaches it as DELETED."""
    raw.request("POST", CM, {"metadata": {"name": "a", "labels": {"app": "x"}}})
    rv = raw.request("GET", CM).json()["metadata"]["resourceVersion"]
    raw.request("PATCH", f"{CM}/a", {"metadata": {"labels": {"app": "y"}}},
                content_type="application/merge-patch+json")
    reply = raw.request("GET", f"{CM}?watch=true&labelSelector=app%3Dx&resourceVersion={rv}"
                        "&timeoutSeconds=1")
    events = [json.loads(line) for line in reply.body.splitlines() if line]
    assert [e["type"] for e in events] == ["DELETED"]


def test_stop_ends_open_watches_promptly(cluster: localcluster.LocalCluster) -> None:
    """Stopping the cluster ends a watch that is waiting for events, and stop returns fast."""
    raw = conftest.Raw(cluster.url)
    finished = threading.Event()

    def watch() -> None:
        raw.request("GET", f"{CM}?watch=true", timeout=30)
        finished.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    conftest.wait_for(lambda: any(r.verb == "watch" for r in cluster.requests))
    started = time.monotonic()
    cluster.stop()
    assert time.monotonic() - started < 3
    assert finished.wait(5)
    cluster.stop()  # idempotent


def test_watch_from_a_compacted_resource_version_is_expired(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch from a resourceVersion older than the kept history gets a 410 Expired event."""
    monkeypatch.setattr(store, "HISTORY_LIMIT", 3)
    with localcluster.LocalCluster(controllers=False) as small:
        raw = conftest.Raw(small.url)
        old = raw.request("GET", CM).json()["metadata"]["resourceVersion"]
        for i in range(5):
            raw.request("POST", CM, {"metadata": {"name": f"c{i}"}})
        reply = raw.request("GET", f"{CM}?watch=true&resourceVersion={old}&timeoutSeconds=2")
        events = [json.loads(line) for line in reply.body.splitlines() if line]
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] == "Expired"
