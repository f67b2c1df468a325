"""No late writes: a write the client gave up on never takes effect after a newer one.

The API server stalls one apply past the client's read timeout. On the local cluster the
stall is a fault inside the server; on the real kube-apiserver it is a validating
admission webhook (failurePolicy Ignore) that answers only after the stall, so the server
itself still holds the request when the client gives up, as in the issue's report. The
client then writes the object again (what a newer intent's rollout does). Because every
write asks the server for a deadline shorter than the client's timeout, the stalled write
is refused with 504 by its deadline and the newer content stays.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import cluster, contract, errors, kube, localcluster
from tests import gitrepo
from tests.e2e.conftest import ClusterUnderTest, Site, kubectl, kubectl_run

pytestmark = pytest.mark.e2e

TIMEOUT = 3.0  # the client's --request-timeout in these tests; the server deadline is 2 s
STALL = 5.0  # longer than the client waits, shorter than the server's own bound (34 s)
NAME = "late-write"
LABEL = contract.LABEL_SITE  # the webhook sees ConfigMaps that carry it


def config_map(value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": NAME, "namespace": "default", "labels": {LABEL: "late"}},
            "data": {"value": value}}


class _Webhook(http.server.BaseHTTPRequestHandler):
    """Admits every request; the first one (only) whose object `server.stalls(obj)` picks
    only after STALL seconds."""

    server: _StallingServer

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        obj = review["request"].get("object") or {}
        if self.server.take(obj):
            time.sleep(STALL)
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": {"uid": review["request"]["uid"],
                                        "allowed": True}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _StallingServer(http.server.ThreadingHTTPServer):
    def __init__(self, stalls: Callable[[dict[str, Any]], bool]) -> None:
        super().__init__(("127.0.0.1", 0), _Webhook)
        self.stalls, self.left, self.lock = stalls, 1, threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the API server hung up on a stalled call at its deadline: as intended

    def take(self, obj: dict[str, Any]) -> bool:
        with self.lock:
            if self.left and self.stalls(obj):
                self.left -= 1
                return True
            return False


@contextlib.contextmanager
def stalling_webhook(cluster: ClusterUnderTest, tmp_path: Path,
                     stalls: Callable[[dict[str, Any]], bool]) -> Iterator[None]:
    """A validating webhook on loopback, over TLS with a self-signed certificate, that
    holds the first write of an object `stalls` picks for STALL seconds (the admission
    call, so the server itself holds the request); registered with the server for the
    ConfigMaps that carry the site label."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl makes the webhook's certificate"
    key, cert = tmp_path / "webhook.key", tmp_path / "webhook.crt"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server = _StallingServer(stalls)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "reconciler-test-stall"},
        "webhooks": [{
            "name": "stall.reconciler-test.example.com",
            "clientConfig": {"url": f"https://127.0.0.1:{server.server_address[1]}/",
                             "caBundle": base64.b64encode(cert.read_bytes()).decode()},
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""],
                       "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "objectSelector": {"matchExpressions": [{"key": LABEL, "operator": "Exists"}]},
            "failurePolicy": "Ignore", "sideEffects": "None", "timeoutSeconds": 10,
            "admissionReviewVersions": ["v1"],
        }],
    }
    manifest = tmp_path / "webhook.json"
    manifest.write_text(json.dumps(config))
    kubectl_run(cluster, "apply", "-f", str(manifest))
    try:
        yield
    finally:
        kubectl_run(cluster, "delete", "-f", str(manifest), "--ignore-not-found")
        server.shutdown()


@contextlib.contextmanager
def stalled_apply(cluster: ClusterUnderTest, tmp_path: Path, *, name: str,
                  value: str | None = None) -> Iterator[None]:
    """The server stalls the first apply of ConfigMap `name` (with data `value: <value>`,
    when given), STALL seconds, inside itself."""
    if cluster.local is not None:
        cluster.local.faults.add(localcluster.Fault(
            verb="apply", path_regex=f"/configmaps/{name}$", latency=STALL, times=1))
        yield
        return

    def stalls(obj: dict[str, Any]) -> bool:
        return ((obj.get("metadata") or {}).get("name") == name
                and (value is None or (obj.get("data") or {}).get("value") == value))

    with stalling_webhook(cluster, tmp_path, stalls):
        yield


def test_a_write_abandoned_by_the_client_never_lands_after_a_newer_one(
        any_cluster: ClusterUnderTest, tmp_path: Path) -> None:
    """An apply stalled in the server past the client's timeout is refused by its deadline;
    the write made after it (a newer intent's) is the one that stays."""
    assert any_cluster.direct_kubeconfig is not None
    adapter = kube.connect(kubeconfig=any_cluster.direct_kubeconfig, request_timeout=TIMEOUT)
    try:
        adapter.apply(config_map("first"))
        with stalled_apply(any_cluster, tmp_path, name=NAME, value="old"):
            sent = time.time()
            with pytest.raises(errors.ClusterError) as raised:
                adapter.apply(config_map("old"))
            # The server gave up at its deadline, before the client would have: a 504 the
            # rollout retries, not a silence after which the write may still land.
            assert time.time() - sent < TIMEOUT, "answered before the client's timeout"
            assert raised.value.retryable and raised.value.status == 504, raised.value
            adapter.apply(config_map("new"))  # the newer intent's write, after giving up
            time.sleep(STALL - (time.time() - sent) + 1.5)  # past the stall's end
            live = adapter.get(adapter_ref())
        assert live is not None and live["data"] == {"value": "new"}, live
        if any_cluster.has_request_log:
            applies = [r for r in any_cluster.requests(sent)
                       if r.verb == "patch" and r.name == NAME and not r.dry_run]
            stalled = applies[0]
            assert stalled.status == 504, applies  # refused by the server's deadline
            assert stalled.handled - stalled.time < TIMEOUT, stalled  # before the client gave up
            newest = max(r.handled for r in applies if 200 <= r.status < 300)
            assert not [r for r in applies if 200 <= r.status < 300
                        and r.handled > newest], applies
    finally:
        with contextlib.suppress(errors.ClusterError):
            adapter.delete(adapter_ref())
        adapter.close()


def adapter_ref() -> cluster.ObjectRef:
    return cluster.ObjectRef("v1", "ConfigMap", "default", NAME)


def test_every_write_asks_the_server_for_a_deadline_shorter_than_the_clients() -> None:
    """Two thirds of the client's timeout, in whole seconds, at least one."""
    assert cluster.write_deadline(30.0) == 20
    assert cluster.write_deadline(3.0) == 2
    assert cluster.write_deadline(1.5) == 1
    assert all(cluster.write_deadline(t) < t for t in (1.5, 2.0, 3.0, 10.0, 30.0, 120.0))


def test_a_request_timeout_too_short_for_a_deadline_is_a_usage_error(tmp_path: Path) -> None:
    """`--request-timeout 1s` leaves no whole second for the server: refused, said why."""
    with pytest.raises(errors.UsageError, match=r"at least 1\.5s"):
        kube.connect(kubeconfig=tmp_path / "none", request_timeout=1.0)


def test_a_sync_whose_apply_the_server_stalls_retries_and_succeeds(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path) -> None:
    """`reconciler sync --request-timeout 3s` with the site's ConfigMap stalled in the
    server: the server refuses the stalled apply at its deadline (504), the rollout
    retries it, the pass succeeds, and no write is handled after the pass ended."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    with stalled_apply(any_cluster, tmp_path, name="sfo-site-config"):
        done = site.sync_cli("--request-timeout", "3s")
        ended = time.time()
    assert done.returncode == 0, done.stderr
    live = kubectl(any_cluster, "get", "configmap", "sfo-site-config", "-n", "sfo-ran",
                   "-o", "json")
    assert live["data"]["site"] == "edge-sfo-01"
    if any_cluster.has_request_log:
        applies = [r for r in any_cluster.writes()
                   if r.name == "sfo-site-config" and r.verb == "patch"]
        assert [r.status for r in applies][:2] == [504, 201] or \
            [r.status for r in applies][:2] == [504, 200], applies
        late = [r for r in any_cluster.writes() if r.intent_id is not None
                and 200 <= r.status < 300 and r.handled > ended]
        assert late == [], "no write of the site handled after the pass ended"


def test_a_write_is_never_sent_twice_by_the_transport(local_cluster: ClusterUnderTest) -> None:
    """A connection dropped after a DELETE was sent fails the call (the caller decides
    whether to retry); urllib3 does not send it again behind the caller's back, where the
    second copy could land after the caller moved on. A dropped GET is read again."""
    assert local_cluster.local is not None
    adapter = kube.connect(kubeconfig=local_cluster.kubeconfig)
    try:
        adapter.apply(config_map("first"))
        local_cluster.local.faults.add(localcluster.Fault(
            verb="delete", path_regex=f"/configmaps/{NAME}$", drop_connection=True, times=1))
        with pytest.raises(errors.ClusterError) as raised:
            adapter.delete(adapter_ref())
        assert raised.value.retryable
        deletes = [r for r in local_cluster.requests() if r.verb == "delete"]
        assert len(deletes) == 1, deletes
        local_cluster.local.faults.add(localcluster.Fault(
            verb="get", path_regex=f"/configmaps/{NAME}$", drop_connection=True, times=1))
        assert adapter.get(adapter_ref()) is not None  # read again after the drop
    finally:
        adapter.close()
