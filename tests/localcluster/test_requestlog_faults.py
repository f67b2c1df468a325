"""The request log (in memory and as JSON lines) and each kind of injected fault."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import pytest

from reconciler import contract, localcluster
from tests.localcluster import conftest

CM = conftest.CM_PATH


def annotated(name: str, intent: str) -> dict[str, object]:
    """A ConfigMap carrying an intent id."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default",
                         "annotations": {contract.ANNOTATION_INTENT_ID: intent}},
            "data": {"k": "v"}}


def test_request_log_records_verbs_intent_dry_run_and_status(tmp_path: Path) -> None:
    """Each request is recorded with its verb, patch type, intent id, dry run flag and code."""
    log = tmp_path / "logs" / "requests.jsonl"
    with localcluster.LocalCluster(controllers=False, request_log=log) as cluster:
        raw = conftest.Raw(cluster.url)
        before = time.time()
        raw.apply(f"{CM}/a", annotated("a", "upf-2-4"), dry_run=True)
        raw.apply(f"{CM}/a", annotated("a", "upf-2-4"))
        raw.request("GET", f"{CM}/missing")
        records = [r for r in cluster.requests if r.time >= before]
    assert [(r.verb, r.patch_type, r.name, r.intent_id, r.dry_run, r.status) for r in records] == [
        ("patch", "apply", "a", "upf-2-4", True, 201),
        ("patch", "apply", "a", "upf-2-4", False, 201),
        ("get", None, "missing", None, False, 404),
    ]
    assert all(r.kind == "ConfigMap" and r.namespace == "default" for r in records)
    assert records[0].path == f"{CM}/a"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert list(lines[0]) == ["time", "handled", "verb", "patchType", "path", "kind",
                              "namespace", "name", "intentId", "dryRun", "status"]
    assert all(line["time"] <= line["handled"] for line in lines)
    assert lines[-3]["intentId"] == "upf-2-4" and lines[-3]["dryRun"] is True
    assert lines[-1]["status"] == 404
    assert isinstance(lines[-1]["time"], float)


def test_error_fault_answers_a_status_once(cluster: localcluster.LocalCluster,
                                           raw: conftest.Raw) -> None:
    """A status fault answers its code with a Status body, for `times` requests only."""
    cluster.faults.add(localcluster.Fault(verb="patch", path_regex="/configmaps/", status=500))
    first = raw.apply(f"{CM}/a", annotated("a", "i"))
    assert first.status == 500
    assert first.json()["reason"] == "InternalError"
    assert raw.apply(f"{CM}/a", annotated("a", "i")).status == 201
    assert [r.status for r in cluster.requests[-2:]] == [500, 201]


def test_throttle_fault_carries_retry_after(cluster: localcluster.LocalCluster,
                                            raw: conftest.Raw) -> None:
    """A 429 fault carries Retry-After: 1 and reason TooManyRequests."""
    cluster.faults.add(localcluster.Fault(verb="list", kind="ConfigMap", status=429))
    reply = raw.request("GET", CM)
    assert reply.status == 429
    assert reply.headers["retry-after"] == "1"
    assert reply.json()["reason"] == "TooManyRequests"


def test_conflict_fault_and_kind_filter(cluster: localcluster.LocalCluster,
                                        raw: conftest.Raw) -> None:
    """A 409 fault for one kind leaves other kinds alone and answers Conflict for its own."""
    cluster.faults.add(localcluster.Fault(verb="apply", kind="Secret", status=409, times=None))
    assert raw.apply(f"{CM}/a", annotated("a", "i")).status == 201
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    for _ in range(2):
        reply = raw.apply("/api/v1/namespaces/default/secrets/s", secret)
        assert reply.status == 409
        assert reply.json()["reason"] == "Conflict"
    cluster.faults.clear()
    assert raw.apply("/api/v1/namespaces/default/secrets/s", secret).status == 201


def test_latency_fault_delays_the_answer(cluster: localcluster.LocalCluster,
                                         raw: conftest.Raw) -> None:
    """A latency fault delays the request and then handles it normally."""
    cluster.faults.add(localcluster.Fault(verb="get", path_regex="^/api/v1/namespaces/default$",
                                          latency=0.4))
    started = time.monotonic()
    reply = raw.request("GET", "/api/v1/namespaces/default")
    assert reply.status == 200
    assert time.monotonic() - started >= 0.4


def test_a_stall_past_the_requests_timeout_is_504_and_writes_nothing(
        cluster: localcluster.LocalCluster, raw: conftest.Raw) -> None:
    """A write stalled in the server past its `timeout` query parameter is answered 504
    `Timeout` at the deadline, as kube-apiserver answers it, and nothing is written; the
    request log shows when it arrived and when it was handled."""
    cluster.faults.add(localcluster.Fault(verb="apply", path_regex="/configmaps/a$",
                                          latency=5.0, times=1))
    started = time.monotonic()
    reply = raw.request("PATCH", f"{CM}/a?fieldManager=test&timeout=1s", annotated("a", "i"),
                        content_type="application/apply-patch+yaml")
    assert reply.status == 504 and json.loads(reply.body)["reason"] == "Timeout"
    assert 1.0 <= time.monotonic() - started < 4.0
    assert raw.request("GET", f"{CM}/a").status == 404
    (stalled,) = [r for r in cluster.requests if r.verb == "patch"]
    assert stalled.status == 504 and 1.0 <= stalled.handled - stalled.time < 4.0


def test_a_stall_within_the_bound_is_handled_late(cluster: localcluster.LocalCluster,
                                                  raw: conftest.Raw) -> None:
    """Without a `timeout`, a write stalled less than the server's 34 s bound is handled
    when the stall ends: after a client that gave up sooner (what the reconciler's own
    `timeout` on every write prevents)."""
    cluster.faults.add(localcluster.Fault(verb="apply", path_regex="/configmaps/a$",
                                          latency=1.0, times=1))
    reply = raw.apply(f"{CM}/a", annotated("a", "i"))
    assert reply.status == 201
    (late,) = [r for r in cluster.requests if r.verb == "patch"]
    assert late.handled - late.time >= 1.0


def test_drop_connection_fault_closes_without_answer(cluster: localcluster.LocalCluster,
                                                     raw: conftest.Raw) -> None:
    """A drop fault closes the socket without a response; the next request is served."""
    handle = cluster.faults.add(localcluster.Fault(verb="create", drop_connection=True))
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        raw.request("POST", CM, annotated("a", "i"))
    assert handle.hits == 1
    assert raw.request("GET", f"{CM}/a").status == 404
    assert raw.request("POST", CM, annotated("a", "i")).status == 201
    dropped = [r for r in cluster.requests if r.verb == "create"]
    assert dropped[0].status == 0 and dropped[0].intent_id == "i"
