"""How the real adapter maps API answers to our errors, once, at the client boundary."""

from __future__ import annotations

from reconciler import errors, kube


def fail(status: int, message: str, what: str = "ConfigMap/ns/x", action: str = "apply"):
    return kube.KubeCluster._fail(status, {"message": message}, what=what, action=action)


def test_secret_values_echoed_by_the_server_are_redacted():
    """A rejected Secret value echoed in the server's message never reaches our error."""
    error = fail(422, 'Secret "x" is invalid: data[a b]: Invalid value: "hunter2": bad key',
                 what="Secret/ns/x")
    assert "hunter2" not in str(error)
    assert "Secret/ns/x apply failed" in str(error) and "<redacted>" in str(error)


def test_other_kinds_keep_the_servers_detail():
    """Outside Secrets the echoed value helps the user and is kept."""
    assert '"ok"' in str(fail(422, 'ConfigMap "x" is invalid: Invalid value: "ok": bad'))


def test_typed_patch_failure_is_permanent():
    """A 500 from building the apply's typed patch names the schema mismatch, no retry."""
    error = fail(500, "failed to create typed patch object (ns/w; telco.example.com/v1alpha1, "
                      "Kind=WorkloadCluster): .spec.bogus: field not declared in schema",
                 what="WorkloadCluster/ns/w")
    assert not error.retryable
    assert ".spec.bogus: field not declared in schema" in str(error)
    assert "does not match its CRD's schema" in str(error)


def test_status_codes_map_to_error_kinds_and_retryability():
    """404 is NotFound, 409 on apply a Conflict, 429 and 5xx retryable, 4xx permanent."""
    assert isinstance(fail(404, "gone"), errors.NotFoundError)
    conflict = fail(409, 'Apply failed with 1 conflict: conflict with "x": .data.k')
    assert isinstance(conflict, errors.ConflictError) and "--force-conflicts" in str(conflict)
    assert fail(429, "slow down").retryable and fail(503, "unavailable").retryable
    assert not fail(403, "forbidden").retryable and not fail(422, "invalid").retryable
