"""Server-side apply and the other writes: ownership, conflicts, no-ops, dry runs, errors."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
from kubernetes import dynamic

from tests.localcluster import conftest, crds

CM = conftest.CM_PATH


def configmap(name: str, data: dict[str, str], **metadata: Any) -> dict[str, Any]:
    """A ConfigMap manifest in the default namespace."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", **metadata}, "data": data}


def test_apply_creates_the_object_with_generation_one(telco: conftest.Raw) -> None:
    """An apply to an absent object creates it (201) with generation 1 and an Apply entry."""
    reply = telco.apply(f"{conftest.WC_PATH}/a", crds.workload_cluster("a"), manager="reconciler")
    assert reply.status == 201
    obj = reply.json()
    assert obj["metadata"]["generation"] == 1
    assert obj["metadata"]["uid"]
    assert obj["metadata"]["creationTimestamp"].endswith("Z")
    entry = obj["metadata"]["managedFields"][0]
    assert (entry["manager"], entry["operation"], entry["fieldsType"]) == (
        "reconciler", "Apply", "FieldsV1")
    assert entry["fieldsV1"]["f:spec"]["f:region"] == {}


def test_apply_bumps_generation_only_when_the_spec_changes(telco: conftest.Raw) -> None:
    """A spec change bumps generation; a label change bumps only resourceVersion."""
    path = f"{conftest.WC_PATH}/a"
    first = telco.apply(path, crds.workload_cluster("a")).json()
    labelled = crds.workload_cluster("a")
    labelled["metadata"]["labels"] = {"tier": "edge"}
    second = telco.apply(path, labelled)
    assert second.status == 200
    assert second.json()["metadata"]["generation"] == 1
    assert int(second.json()["metadata"]["resourceVersion"]) > int(
        first["metadata"]["resourceVersion"])
    resized = crds.workload_cluster("a", nodes=5)
    resized["metadata"]["labels"] = {"tier": "edge"}
    third = telco.apply(path, resized).json()
    assert third["metadata"]["generation"] == 2
    assert third["spec"]["nodes"] == 5
    assert third["metadata"]["labels"] == {"tier": "edge"}


def test_same_apply_twice_is_a_no_op(telco: conftest.Raw) -> None:
    """Applying the same configuration again changes neither resourceVersion nor generation."""
    path = f"{conftest.WC_PATH}/a"
    first = telco.apply(path, crds.workload_cluster("a")).json()
    rv_before = telco.request("GET", "/api/v1/namespaces").json()["metadata"]["resourceVersion"]
    again = telco.apply(path, crds.workload_cluster("a"))
    assert again.status == 200
    assert again.json()["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert again.json()["metadata"]["generation"] == 1
    rv_after = telco.request("GET", "/api/v1/namespaces").json()["metadata"]["resourceVersion"]
    assert rv_after == rv_before


def test_apply_removes_fields_the_manager_stopped_applying(raw: conftest.Raw) -> None:
    """A key the manager applied before and omits now is removed; another's key stays."""
    raw.apply(f"{CM}/a", configmap("a", {"keep": "1", "drop": "2"}, labels={"a": "1"}))
    other = raw.apply(f"{CM}/a", configmap("a", {"theirs": "3"}), manager="other")
    assert other.status == 200
    result = raw.apply(f"{CM}/a", configmap("a", {"keep": "1"})).json()
    assert result["data"] == {"keep": "1", "theirs": "3"}
    assert "labels" not in result["metadata"]


def test_apply_merges_containers_by_name_and_drops_removed_ones(raw: conftest.Raw) -> None:
    """Containers merge by name across managers; a container its manager drops is removed."""
    path = "/apis/apps/v1/namespaces/default/deployments/web"
    main = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                         {"name": "app", "image": "app:1"}, {"name": "log", "image": "log:1"}]}}}}
    sidecar = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"template": {"spec": {"containers": [{"name": "proxy",
                                                              "image": "proxy:1"}]}}}}
    raw.apply(path, main, manager="team")
    merged = raw.apply(path, sidecar, manager="mesh").json()
    containers = merged["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "log", "proxy"]
    main["spec"]["template"]["spec"]["containers"].pop()
    trimmed = raw.apply(path, main, manager="team").json()
    assert [c["name"] for c in trimmed["spec"]["template"]["spec"]["containers"]] == [
        "app", "proxy"]
    assert trimmed["metadata"]["generation"] == 3
    clash = {**sidecar, "spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "app:2"}]}}}}
    reply = raw.apply(path, clash, manager="mesh")
    assert reply.status == 409
    assert reply.json()["message"].endswith(
        'conflict with "team": .spec.template.spec.containers[name="app"].image')


def test_conflicting_apply_is_refused_then_forced(raw: conftest.Raw) -> None:
    """Changing a field another manager owns is a 409 Conflict unless force=true."""
    raw.apply(f"{CM}/a", configmap("a", {"key": "one"}), manager="other-manager")
    reply = raw.apply(f"{CM}/a", configmap("a", {"key": "two"}), manager="reconciler")
    assert reply.status == 409
    status = reply.json()
    assert (status["kind"], status["status"], status["reason"]) == ("Status", "Failure",
                                                                   "Conflict")
    assert status["message"] == (
        'Apply failed with 1 conflict: conflict with "other-manager": .data.key')
    assert status["details"]["causes"][0]["field"] == ".data.key"
    forced = raw.apply(f"{CM}/a", configmap("a", {"key": "two"}), manager="reconciler",
                       force=True)
    assert forced.status == 200
    assert forced.json()["data"] == {"key": "two"}
    managers = {e["manager"] for e in forced.json()["metadata"]["managedFields"]}
    assert managers == {"reconciler"}


def test_same_value_from_two_managers_is_shared_not_a_conflict(raw: conftest.Raw) -> None:
    """Two managers applying the same value co-own the field without a conflict."""
    raw.apply(f"{CM}/a", configmap("a", {"key": "v"}), manager="one")
    reply = raw.apply(f"{CM}/a", configmap("a", {"key": "v"}), manager="two")
    assert reply.status == 200
    entries = reply.json()["metadata"]["managedFields"]
    assert sorted(e["manager"] for e in entries) == ["one", "two"]


def test_update_manager_conflict_names_its_version(raw: conftest.Raw) -> None:
    """A field changed by a merge patch belongs to its manager, and apply conflicts name it
    with its version and no time, as the real apiserver does."""
    raw.apply(f"{CM}/a", configmap("a", {"key": "one"}), manager="reconciler")
    patched = raw.request("PATCH", f"{CM}/a?fieldManager=kubectl-edit", {"data": {"key": "hand"}},
                          content_type="application/merge-patch+json")
    assert patched.status == 200
    reply = raw.apply(f"{CM}/a", configmap("a", {"key": "one"}), manager="reconciler")
    assert reply.status == 409
    assert reply.json()["message"] == (
        'Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .data.key')


def test_apply_without_field_manager_is_invalid(raw: conftest.Raw) -> None:
    """An apply patch without fieldManager is refused with the real 422 PatchOptions error."""
    reply = raw.apply(f"{CM}/a", configmap("a", {}), manager=None)
    assert reply.status == 422
    assert reply.json()["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
        "is required for apply patch")


def test_dry_run_stores_nothing(raw: conftest.Raw) -> None:
    """dryRun=All on create, apply, patch and delete answers the result and stores nothing."""
    rv = raw.request("GET", CM).json()["metadata"]["resourceVersion"]
    created = raw.request("POST", f"{CM}?dryRun=All", configmap("a", {"k": "v"}))
    assert created.status == 201 and created.json()["data"] == {"k": "v"}
    applied = raw.apply(f"{CM}/b", configmap("b", {"k": "v"}), dry_run=True)
    assert applied.status == 201
    assert raw.request("GET", f"{CM}/a").status == 404
    assert raw.request("GET", f"{CM}/b").status == 404
    assert raw.request("GET", CM).json()["metadata"]["resourceVersion"] == rv
    raw.apply(f"{CM}/c", configmap("c", {"k": "v"}))
    stored = raw.request("GET", f"{CM}/c").json()
    patched = raw.request("PATCH", f"{CM}/c?dryRun=All", {"data": {"k": "w"}},
                          content_type="application/merge-patch+json")
    assert patched.json()["data"] == {"k": "w"}
    assert raw.request("DELETE", f"{CM}/c?dryRun=All").status == 200
    assert raw.request("GET", f"{CM}/c").json() == stored


def test_namespaced_object_in_a_missing_namespace_is_not_found(raw: conftest.Raw) -> None:
    """Creating or applying into a namespace that does not exist is a 404 naming it."""
    path = "/api/v1/namespaces/nowhere/configmaps"
    for reply in (raw.request("POST", path, configmap("a", {}) | {"metadata": {"name": "a"}}),
                  raw.apply(f"{path}/a", {"apiVersion": "v1", "kind": "ConfigMap",
                                          "metadata": {"name": "a"}})):
        assert reply.status == 404
        assert reply.json()["message"] == 'namespaces "nowhere" not found'
        assert reply.json()["details"] == {"name": "nowhere", "kind": "namespaces"}


def test_create_twice_is_already_exists(raw: conftest.Raw) -> None:
    """A second POST of the same name is 409 AlreadyExists."""
    assert raw.request("POST", CM, configmap("a", {})).status == 201
    reply = raw.request("POST", CM, configmap("a", {}))
    assert reply.status == 409
    assert reply.json()["reason"] == "AlreadyExists"
    assert reply.json()["message"] == 'configmaps "a" already exists'


def test_update_with_a_stale_resource_version_conflicts(raw: conftest.Raw) -> None:
    """A PUT carrying an old resourceVersion is 409 Conflict with the real message."""
    created = raw.request("POST", CM, configmap("a", {"k": "1"})).json()
    fresh = dict(created, data={"k": "2"})
    assert raw.request("PUT", f"{CM}/a", fresh).status == 200
    stale = dict(created, data={"k": "3"})
    reply = raw.request("PUT", f"{CM}/a", stale)
    assert reply.status == 409
    assert reply.json()["message"] == (
        'Operation cannot be fulfilled on configmaps "a": the object has been modified; '
        "please apply your changes to the latest version and try again")


def test_configmaps_have_no_generation_but_deployments_do(raw: conftest.Raw) -> None:
    """Like a real server, ConfigMaps and Namespaces carry no generation; Deployments do."""
    assert "generation" not in raw.request("POST", CM, configmap("a", {})).json()["metadata"]
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
    }
    path = "/apis/apps/v1/namespaces/default/deployments/web"
    created = raw.apply(path, deployment).json()
    assert created["metadata"]["generation"] == 1
    assert created["spec"]["replicas"] == 1  # defaulted
    deployment["spec"]["replicas"] = 3
    assert raw.apply(path, deployment).json()["metadata"]["generation"] == 2


def test_json_and_merge_patches(raw: conftest.Raw) -> None:
    """JSON patch (add, replace, remove, test) and merge patch (null deletes) both work."""
    raw.request("POST", CM, configmap("a", {"x": "1", "y": "2"}))
    ops = [{"op": "test", "path": "/data/x", "value": "1"},
           {"op": "replace", "path": "/data/x", "value": "10"},
           {"op": "add", "path": "/data/z", "value": "3"},
           {"op": "remove", "path": "/data/y"}]
    reply = raw.request("PATCH", f"{CM}/a", ops, content_type="application/json-patch+json")
    assert reply.status == 200 and reply.json()["data"] == {"x": "10", "z": "3"}
    failed = raw.request("PATCH", f"{CM}/a", [{"op": "test", "path": "/data/x", "value": "no"}],
                         content_type="application/json-patch+json")
    assert failed.status == 422
    merged = raw.request("PATCH", f"{CM}/a", {"data": {"x": None, "w": "4"}},
                         content_type="application/merge-patch+json")
    assert merged.json()["data"] == {"z": "3", "w": "4"}


def test_strategic_merge_patch_is_refused_for_custom_resources(telco: conftest.Raw) -> None:
    """Custom resources take no strategic merge patch: 415 as on a real server."""
    telco.apply(f"{conftest.WC_PATH}/a", crds.workload_cluster("a"))
    reply = telco.request("PATCH", f"{conftest.WC_PATH}/a", {"spec": {"nodes": 4}},
                          content_type="application/strategic-merge-patch+json")
    assert reply.status == 415
    assert reply.json()["reason"] == "UnsupportedMediaType"


def test_schema_errors_are_invalid_with_real_wording(telco: conftest.Raw) -> None:
    """On create, type, required and enum violations answer 422 Invalid, as the apiserver."""
    bad_type = telco.request("POST", conftest.WC_PATH, crds.workload_cluster("a", nodes="three"))
    assert bad_type.status == 422
    assert bad_type.json()["message"] == (
        'WorkloadCluster.telco.example.com "a" is invalid: spec.nodes: Invalid value: "string": '
        'spec.nodes in body must be of type integer: "string"')
    missing = crds.workload_cluster("b")
    del missing["spec"]["region"]
    reply = telco.request("POST", conftest.WC_PATH, missing)
    assert reply.status == 422
    assert reply.json()["details"]["causes"][0] == {
        "reason": "FieldValueRequired", "message": "Required value", "field": "spec.region"}
    bad_enum = telco.request("POST", conftest.NF_PATH, crds.network_function("n", type="XYZ"))
    assert bad_enum.status == 422
    assert 'spec.type: Unsupported value: "XYZ": supported values: "UPF", "AMF", "SMF"' in (
        bad_enum.json()["message"])


def test_unknown_fields_are_pruned_on_create(telco: conftest.Raw) -> None:
    """On create, fields the structural schema does not declare are dropped silently."""
    reply = telco.request("POST", conftest.WC_PATH, crds.workload_cluster("a", colour="blue"))
    assert reply.status == 201
    assert "colour" not in reply.json()["spec"]


def test_apply_with_an_undeclared_field_fails_to_build_its_typed_patch(
        telco: conftest.Raw) -> None:
    """Server-side apply of an undeclared field is a 500, not a prune (found on v1.37.2)."""
    reply = telco.apply(f"{conftest.WC_PATH}/a", crds.workload_cluster("a", colour="blue"))
    assert reply.status == 500
    assert reply.json()["message"] == (
        "failed to create typed patch object (default/a; telco.example.com/v1alpha1, "
        "Kind=WorkloadCluster): .spec.colour: field not declared in schema")
    assert telco.request("GET", f"{conftest.WC_PATH}/a").status == 404


def test_apply_with_a_wrongly_typed_field_fails_to_build_its_typed_patch(
        telco: conftest.Raw) -> None:
    """Server-side apply of a value of the wrong type is a 500 before any 422 validation."""
    reply = telco.apply(f"{conftest.WC_PATH}/a", crds.workload_cluster("a", nodes="three"))
    assert reply.status == 500
    assert reply.json()["message"].endswith(
        ".spec.nodes: expected numeric (int or float), got string")
    region = telco.apply(f"{conftest.WC_PATH}/b", crds.workload_cluster("b", region=5))
    assert region.status == 500
    assert region.json()["message"].endswith(
        ".spec.region: expected string, got &value.valueUnstructured{Value:5}")


def test_invalid_name_is_rejected(raw: conftest.Raw) -> None:
    """A name that is no DNS subdomain is 422 with the real validation text."""
    reply = raw.request("POST", CM, configmap("Bad_Name", {}))
    assert reply.status == 422
    assert "a lowercase RFC 1123 subdomain must consist of" in reply.json()["message"]


def test_dynamic_client_server_side_apply_with_force(
        telco: conftest.Raw, dyn: dynamic.DynamicClient) -> None:
    """The official client's server_side_apply hits conflicts and resolves them with force."""
    resource = dyn.resources.get(api_version=crds.API_VERSION, kind="NetworkFunction")
    resource.server_side_apply(body=crds.network_function("upf"), field_manager="one")
    with pytest.raises(kubernetes.client.ApiException) as caught:
        resource.server_side_apply(body=crds.network_function("upf", replicas=5),
                                   field_manager="two")
    assert caught.value.status == 409
    forced = resource.server_side_apply(body=crds.network_function("upf", replicas=5),
                                        field_manager="two", force_conflicts=True)
    assert forced.spec.replicas == 5
    assert forced.metadata.generation == 2


def test_delete_answers_status_or_object_as_the_real_server(raw: conftest.Raw) -> None:
    """ConfigMap deletes answer a Success Status; ServiceAccount deletes the object; 404 after."""
    raw.request("POST", CM, configmap("a", {}))
    reply = raw.request("DELETE", f"{CM}/a")
    assert reply.status == 200
    assert reply.json()["status"] == "Success"
    assert reply.json()["details"]["name"] == "a"
    assert raw.request("DELETE", f"{CM}/a").status == 404
    sa_path = "/api/v1/namespaces/default/serviceaccounts"
    raw.request("POST", sa_path, {"metadata": {"name": "bot"}})
    assert raw.request("DELETE", f"{sa_path}/bot").json()["kind"] == "ServiceAccount"


def test_finalizers_hold_deletion_until_removed(raw: conftest.Raw) -> None:
    """An object with finalizers gets a deletionTimestamp and goes once they are removed."""
    raw.request("POST", CM, configmap("a", {}, finalizers=["example.com/hold"]))
    held = raw.request("DELETE", f"{CM}/a").json()
    assert held["metadata"]["deletionTimestamp"]
    assert raw.request("GET", f"{CM}/a").status == 200
    raw.request("PATCH", f"{CM}/a", {"metadata": {"finalizers": None}},
                content_type="application/merge-patch+json")
    assert raw.request("GET", f"{CM}/a").status == 404


def test_deleting_a_namespace_deletes_its_objects(raw: conftest.Raw) -> None:
    """Deleting a namespace removes the objects in it at once and answers Terminating."""
    raw.request("POST", "/api/v1/namespaces", {"metadata": {"name": "edge"}})
    raw.request("POST", "/api/v1/namespaces/edge/configmaps", {"metadata": {"name": "a"}})
    reply = raw.request("DELETE", "/api/v1/namespaces/edge")
    assert reply.status == 200
    assert reply.json()["status"]["phase"] == "Terminating"
    assert raw.request("GET", "/api/v1/namespaces/edge").status == 404
    assert raw.request("GET", "/api/v1/configmaps").json()["items"] == []
    forbidden = raw.request("DELETE", "/api/v1/namespaces/default")
    assert forbidden.status == 403
