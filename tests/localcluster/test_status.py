"""The status subresource: main writes keep status, /status writes change only status."""

from __future__ import annotations

from tests.localcluster import conftest, crds

WC = conftest.WC_PATH


def test_main_resource_writes_ignore_status(telco: conftest.Raw) -> None:
    """Status sent to the main resource is dropped on create and on update."""
    body = crds.workload_cluster("a")
    body["status"] = {"phase": "Ready"}
    created = telco.apply(f"{WC}/a", body).json()
    assert "status" not in created
    patched = telco.request("PATCH", f"{WC}/a", {"status": {"phase": "Hacked"}},
                            content_type="application/merge-patch+json")
    assert patched.status == 200
    assert "status" not in patched.json()
    assert patched.json()["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_status_writes_change_only_status_and_not_generation(telco: conftest.Raw) -> None:
    """A /status patch sets status, ignores spec and labels, and leaves generation alone."""
    telco.apply(f"{WC}/a", crds.workload_cluster("a"))
    reply = telco.request(
        "PATCH", f"{WC}/a/status",
        {"metadata": {"labels": {"x": "y"}}, "spec": {"nodes": 99},
         "status": {"phase": "Ready", "observedGeneration": 1}},
        content_type="application/merge-patch+json")
    assert reply.status == 200
    obj = reply.json()
    assert obj["status"] == {"phase": "Ready", "observedGeneration": 1}
    assert obj["spec"]["nodes"] == 3
    assert "labels" not in obj["metadata"]
    assert obj["metadata"]["generation"] == 1
    status_entry = [e for e in obj["metadata"]["managedFields"] if e.get("subresource")]
    assert status_entry and status_entry[0]["subresource"] == "status"


def test_status_of_a_missing_object_is_not_found(telco: conftest.Raw) -> None:
    """Writing /status of an absent object is a 404 naming the resource."""
    reply = telco.request("PATCH", f"{WC}/ghost/status", {"status": {"phase": "x"}},
                          content_type="application/merge-patch+json")
    assert reply.status == 404
    assert reply.json()["message"] == 'workloadclusters.telco.example.com "ghost" not found'


def test_status_apply_and_spec_apply_do_not_conflict(telco: conftest.Raw) -> None:
    """Apply to /status by a controller and apply to the spec by a user own separate fields."""
    telco.apply(f"{WC}/a", crds.workload_cluster("a"), manager="user")
    status = {"apiVersion": crds.API_VERSION, "kind": "WorkloadCluster",
              "metadata": {"name": "a", "namespace": "default"}, "status": {"phase": "Ready"}}
    assert telco.apply(f"{WC}/a/status", status, manager="controller").status == 200
    again = telco.apply(f"{WC}/a", crds.workload_cluster("a", nodes=4), manager="user").json()
    assert again["status"] == {"phase": "Ready"}
    assert again["metadata"]["generation"] == 2
