"""How the real adapter maps API answers to our errors, once, at the client boundary."""

from __future__ import annotations

import base64
import http.server
import json
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import urllib3

from reconciler import errors, kube


def fail(status: int, message: str, what: str = "ConfigMap/ns/x",
         action: str = "apply") -> errors.ClusterError:
    return kube.KubeCluster._fail(status, {"message": message}, what=what, action=action)


def test_secret_values_echoed_by_the_server_are_redacted() -> None:
    """A rejected Secret value echoed in the server's message never reaches our error."""
    error = fail(422, 'Secret "x" is invalid: data[a b]: Invalid value: "hunter2": bad key',
                 what="Secret/ns/x")
    assert "hunter2" not in str(error)
    assert "Secret/ns/x apply failed" in str(error) and "<redacted>" in str(error)


def test_other_kinds_keep_the_servers_detail() -> None:
    """Outside Secrets the echoed value helps the user and is kept."""
    assert '"ok"' in str(fail(422, 'ConfigMap "x" is invalid: Invalid value: "ok": bad'))


def test_typed_patch_failure_is_permanent() -> None:
    """A 500 from building the apply's typed patch names the schema mismatch, no retry."""
    error = fail(500, "failed to create typed patch object (ns/w; telco.example.com/v1alpha1, "
                      "Kind=WorkloadCluster): .spec.bogus: field not declared in schema",
                 what="WorkloadCluster/ns/w")
    assert not error.retryable
    assert ".spec.bogus: field not declared in schema" in str(error)
    assert "does not match its CRD's schema" in str(error)


def test_status_codes_map_to_error_kinds_and_retryability() -> None:
    """404 is NotFound, 409 on apply a Conflict, 429 and 5xx retryable, 4xx permanent."""
    assert isinstance(fail(404, "gone"), errors.NotFoundError)
    conflict = fail(409, 'Apply failed with 1 conflict: conflict with "x": .data.k')
    assert isinstance(conflict, errors.ConflictError) and "--force-conflicts" in str(conflict)
    assert fail(429, "slow down").retryable and fail(503, "unavailable").retryable
    assert not fail(403, "forbidden").retryable and not fail(422, "invalid").retryable


# --- the Status payload, as kube-apiserver v1.37.2 sends it ----------------------------------


def status_body(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    """A Status body as the API server writes it (captured from kube-apiserver v1.37.2)."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": message, "reason": reason,
                            "code": code}
    if details:
        body["details"] = details
    return body


def conflict_cause(manager: str, field: str) -> dict[str, str]:
    """One `details.causes` entry of an apply conflict; `manager` as printManager prints it."""
    return {"reason": "FieldManagerConflict", "message": f"conflict with {manager}",
            "field": field}


def test_apply_conflict_keeps_the_servers_causes_and_names_the_manager() -> None:
    """A 409 apply conflict keeps reason, details and causes, and names its manager."""
    body = status_body(
        409, "Conflict", 'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply"'
                         ' using apps/v1: .spec.replicas',
        causes=[conflict_cause('"kubectl-client-side-apply" using apps/v1', ".spec.replicas")])
    error = kube.KubeCluster._fail(409, body, what="Deployment/ran/upf", action="apply")
    assert isinstance(error, errors.ConflictError)
    assert error.managers == ("kubectl-client-side-apply",)
    assert error.causes == (errors.Cause(
        type="FieldManagerConflict", field=".spec.replicas",
        message='conflict with "kubectl-client-side-apply" using apps/v1'),)
    assert error.reason == "Conflict" and error.status == 409
    assert error.details == body["details"]
    assert str(error) == (
        'Deployment/ran/upf apply failed: Apply failed with 1 conflict: conflict with '
        '"kubectl-client-side-apply" using apps/v1: .spec.replicas (another field manager '
        'owns these fields; --force-conflicts takes them)')


def test_conflict_with_several_managers_names_each_once_in_the_servers_order() -> None:
    """Several causes of several managers give each manager once, in the causes' order."""
    body = status_body(
        409, "Conflict", 'Apply failed with 3 conflicts: conflicts with "first":\n- .data.k\n'
                         '- .data.l\nconflicts with "kubectl-edit" using v1:\n- .data.j',
        causes=[conflict_cause('"first"', ".data.k"),
                conflict_cause('"kubectl-edit" using v1', ".data.j"),
                conflict_cause('"first"', ".data.l")])
    error = kube.KubeCluster._fail(409, body, what="ConfigMap/ns/a", action="apply")
    assert isinstance(error, errors.ConflictError)
    assert error.managers == ("first", "kubectl-edit")
    assert [c.field for c in error.causes] == [".data.k", ".data.j", ".data.l"]


def test_manager_names_are_read_as_the_quoted_strings_the_server_writes() -> None:
    """A quote inside a manager's name (Go's %q escapes it) and a subresource are read right."""
    body = status_body(409, "Conflict", "Apply failed with 1 conflict: ...", causes=[
        conflict_cause(r'"odd \"name\"" with subresource "status" using v1', ".status.x")])
    error = kube.KubeCluster._fail(409, body, what="ConfigMap/ns/a", action="apply")
    assert isinstance(error, errors.ConflictError)
    assert error.managers == ('odd "name"',)


def test_causes_of_another_kind_or_wording_name_no_manager() -> None:
    """Only FieldManagerConflict causes in the server's wording name a manager."""
    body = status_body(409, "Conflict", "Apply failed with 2 conflicts: ...", causes=[
        {"reason": "FieldValueInvalid", "message": 'conflict with "not-a-manager"',
         "field": ".data.k"},
        {"reason": "FieldManagerConflict", "message": "some other wording", "field": ".data.j"}])
    error = kube.KubeCluster._fail(409, body, what="ConfigMap/ns/a", action="apply")
    assert isinstance(error, errors.ConflictError)
    assert error.managers == () and len(error.causes) == 2


def test_invalid_secret_causes_and_details_are_redacted() -> None:
    """A Secret's echoed value is redacted in the message, each cause and the details."""
    echoed = 'Invalid value: "hunter2": a valid config key must consist of alphanumeric characters'
    body = status_body(422, "Invalid", f'Secret "s" is invalid: data[a b]: {echoed}', name="s",
                       kind="Secret", causes=[{"reason": "FieldValueInvalid", "message": echoed,
                                               "field": "data[a b]"}])
    error = kube.KubeCluster._fail(422, body, what="Secret/ns/s", action="apply")
    assert type(error) is errors.ApplyError and not error.retryable
    assert "hunter2" not in repr((str(error), error.causes, error.details))
    assert error.causes == (errors.Cause(
        type="FieldValueInvalid", field="data[a b]",
        message="Invalid value: <redacted>: a valid config key must consist of alphanumeric "
                "characters"),)
    assert error.details is not None
    assert (error.details["name"], error.details["kind"]) == ("s", "Secret")
    assert body["details"]["causes"][0]["message"] == echoed  # the server's body is not changed


def test_other_kinds_keep_the_causes_as_sent() -> None:
    """Outside Secrets the causes are kept word for word: they help the user."""
    body = status_body(422, "Invalid", 'WorkloadCluster.telco.example.com "m" is invalid: '
                                       "spec.region: Required value", name="m",
                       kind="WorkloadCluster", causes=[{"reason": "FieldValueRequired",
                                                        "message": "Required value",
                                                        "field": "spec.region"}])
    error = kube.KubeCluster._fail(422, body, what="WorkloadCluster/ns/m", action="apply")
    assert error.causes == (errors.Cause(type="FieldValueRequired", field="spec.region",
                                         message="Required value"),)
    assert error.details == body["details"] and error.reason == "Invalid"


def test_not_found_keeps_reason_and_details() -> None:
    """A 404 Status keeps its reason and details (the name and kind); it has no causes."""
    body = status_body(404, "NotFound", 'configmaps "absent" not found', name="absent",
                       kind="configmaps")
    error = kube.KubeCluster._fail(404, body, what="ConfigMap/ns/absent", action="read")
    assert isinstance(error, errors.NotFoundError)
    assert error.reason == "NotFound" and error.details == {"name": "absent",
                                                            "kind": "configmaps"}
    assert error.causes == ()
    assert str(error) == 'ConfigMap/ns/absent read failed: configmaps "absent" not found'


def test_a_body_that_is_no_status_leaves_the_payload_empty() -> None:
    """A proxy's HTML page or an empty body gives no reason, details, causes or managers."""
    for data in (None, b"<html>bad gateway</html>", {"message": 7, "details": "x"}):
        error = kube.KubeCluster._fail(409, data, what="ConfigMap/ns/a", action="apply")
        assert isinstance(error, errors.ConflictError)
        assert (error.reason, error.details, error.causes, error.managers) == (None, None, (), ())
        assert str(error).startswith("ConfigMap/ns/a apply failed: HTTP 409")


# --- chained causes -----------------------------------------------------------------------------


def test_an_unreadable_kubeconfig_chains_its_cause(tmp_path: Path) -> None:
    """A kubeconfig that cannot be loaded is a UsageError whose cause is the loader's error."""
    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    with pytest.raises(errors.UsageError, match="cannot load cluster config from") as caught:
        kube.connect(kubeconfig=config)
    assert caught.value.__cause__ is not None


def test_an_unreachable_server_is_retryable_and_chains_the_transport_error() -> None:
    """Connection refused is a retryable ClusterError caused by the transport's own error."""
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{_closed_port()}"
    configuration.retries = 0
    adapter = kube.KubeCluster(kubernetes.client.ApiClient(configuration))
    try:
        with pytest.raises(errors.ClusterError, match="cannot reach the API server") as caught:
            adapter.resource(api_version="v1", kind="ConfigMap")
    finally:
        adapter.close()
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, urllib3.exceptions.HTTPError | OSError)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with the real openssl."""
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_a_server_whose_certificate_does_not_verify_is_not_retryable(tmp_path: Path) -> None:
    """A TLS failure (the server's certificate is not signed by the kubeconfig's CA) is a
    ClusterError that says no retry can help, for a real TLS server on loopback."""
    served_cert, served_key = _self_signed(tmp_path, "server")
    other_ca, _ = _self_signed(tmp_path, "other-ca")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(served_cert, served_key)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {
            "server": f"https://127.0.0.1:{server.server_address[1]}",
            "certificate-authority-data": base64.b64encode(other_ca.read_bytes()).decode()}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    target = kube.connect(kubeconfig=kubeconfig)
    try:
        with pytest.raises(errors.ClusterError) as caught:
            target.resource(api_version="v1", kind="ConfigMap")
    finally:
        target.close()
        server.shutdown()
    assert not caught.value.retryable
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)


def test_names_are_escaped_as_one_url_path_segment() -> None:
    """A name reaches the URL as one path segment: `/`, `?`, `%`, `#` and `..` cannot
    step to another path or start a query (names are validated before; this is the last
    word)."""
    from reconciler import kube

    assert kube._segment("system:metrics-server") == "system%3Ametrics-server"
    assert kube._segment("../../api/v1/secrets") == "..%2F..%2Fapi%2Fv1%2Fsecrets"
    assert kube._segment("a?watch=1#x%") == "a%3Fwatch%3D1%23x%25"
