"""API behaviours the reconciler relies on, pinned to what a real kube-apiserver does.

Each expectation was read off kube-apiserver v1.37.2; running the same requests against
the embedded local cluster keeps our imitation honest.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
from ruamel.yaml import YAML

from reconciler import contract, errors, kube
from tests.e2e.conftest import ClusterUnderTest

pytestmark = pytest.mark.e2e

NS = "conformance"
CM_PATH = f"/api/v1/namespaces/{NS}/configmaps"
WC_PATH = f"/apis/telco.example.com/v1alpha1/namespaces/{NS}/workloadclusters"


class Api:
    """Raw requests through the official client, for exact status codes and bodies."""

    def __init__(self, kubeconfig: Path) -> None:
        self.client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))

    def __call__(self, method: str, path: str, body: Any = None, *,
                 content_type: str = "application/json",
                 query: list[tuple[str, str]] | None = None) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        method, url, headers, payload, _ = self.client.param_serialize(
            method=method, resource_path=path, query_params=query or [], header_params=headers,
            body=body, auth_settings=["BearerToken"])
        response = self.client.call_api(method, url, header_params=headers, body=payload)
        raw = response.read()
        return response.status, json.loads(raw) if raw and raw[:1] == b"{" else raw

    def apply(self, path: str, body: Any, *, manager: str = "conformance",
              extra: list[tuple[str, str]] | None = None) -> tuple[int, Any]:
        return self("PATCH", path, body, content_type="application/apply-patch+yaml",
                    query=[("fieldManager", manager), *(extra or [])])


@pytest.fixture
def api(any_cluster: ClusterUnderTest) -> Iterator[Api]:
    """A raw client, with the test namespace and the sample CRDs in place, cleaned after."""
    client = Api(any_cluster.direct_kubeconfig)  # type: ignore[arg-type]
    client.apply(f"/api/v1/namespaces/{NS}",
                 {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    crd = YAML(typ="safe").load(
        (contract.sample_repo_dir() / "crds" / "workloadclusters.telco.example.com.yaml")
        .read_text())
    client.apply(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
                 crd)
    deadline = time.monotonic() + 30
    while client("GET", "/apis/telco.example.com/v1alpha1")[0] != 200:
        assert time.monotonic() < deadline, "the CRD was not served"
        threading.Event().wait(0.1)
    yield client
    client("DELETE", f"/api/v1/namespaces/{NS}")
    deadline = time.monotonic() + 60
    while client("GET", f"/api/v1/namespaces/{NS}")[0] != 404:
        assert time.monotonic() < deadline, "the test namespace did not go away"
        threading.Event().wait(0.2)
    client.client.close()


def cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": "x"}},
            "data": data or {"k": "v"}}


def wc(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "telco.example.com/v1alpha1", "kind": "WorkloadCluster",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"region": "r", "kubernetesVersion": "v1.30.2", **spec}}


def test_apply_creates_with_201_and_a_repeat_writes_nothing(api: Api):
    """Apply answers 201 on create, 200 after; an identical apply keeps resourceVersion."""
    created, body = api.apply(f"{CM_PATH}/a", cm("a"))
    again, same = api.apply(f"{CM_PATH}/a", cm("a"))
    assert (created, again) == (201, 200)
    assert same["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]
    assert "generation" not in body["metadata"]  # ConfigMaps have none


def test_apply_needs_a_field_manager(api: Api):
    """An apply without fieldManager is 422 Invalid."""
    status, body = api("PATCH", f"{CM_PATH}/a", cm("a"),
                       content_type="application/apply-patch+yaml")
    assert status == 422 and body["reason"] == "Invalid"
    assert "fieldManager: Required value" in body["message"]


def test_conflicting_manager_gets_409_naming_the_owner_and_field(api: Api):
    """A second manager changing an owned field conflicts; force takes it."""
    api.apply(f"{CM_PATH}/a", cm("a"), manager="first")
    status, body = api.apply(f"{CM_PATH}/a", cm("a", k="w"), manager="second")
    assert status == 409 and body["reason"] == "Conflict"
    assert 'conflict with "first"' in body["message"] and ".data.k" in body["message"]
    # The manager is named in each cause's message; the cause's type is its `reason`.
    assert body["details"] == {"causes": [{"reason": "FieldManagerConflict",
                                           "message": 'conflict with "first"',
                                           "field": ".data.k"}]}
    forced, taken = api.apply(f"{CM_PATH}/a", cm("a", k="w"), manager="second",
                              extra=[("force", "true")])
    assert forced == 200 and taken["data"]["k"] == "w"


def test_adapter_conflict_error_keeps_the_managers_and_causes(
        api: Api, any_cluster: ClusterUnderTest) -> None:
    """The adapter's ConflictError carries the Status: reason, causes, and each manager once."""
    api.apply(f"{CM_PATH}/a", cm("a", k="v"), manager="first")
    # An imperative edit (kubectl edit, patch): an Update manager, printed `using v1`.
    status, _ = api("PATCH", f"{CM_PATH}/a", {"data": {"j": "1"}},
                    content_type="application/merge-patch+json",
                    query=[("fieldManager", "kubectl-edit")])
    assert status == 200
    adapter = kube.connect(kubeconfig=any_cluster.direct_kubeconfig)
    try:
        with pytest.raises(errors.ConflictError) as caught:
            adapter.apply(cm("a", k="w", j="2"))
    finally:
        adapter.close()
    conflict = caught.value
    assert conflict.status == 409 and conflict.reason == "Conflict"
    assert not conflict.retryable
    # The apiserver gathers conflicts from a map: their order is not fixed.
    assert sorted(conflict.managers) == ["first", "kubectl-edit"]
    assert sorted((c.type, c.field, c.message) for c in conflict.causes) == [
        ("FieldManagerConflict", ".data.j", 'conflict with "kubectl-edit" using v1'),
        ("FieldManagerConflict", ".data.k", 'conflict with "first"')]
    assert conflict.details is not None and len(conflict.details["causes"]) == 2
    assert str(conflict).startswith(
        f"ConfigMap/{NS}/a apply failed: Apply failed with 2 conflicts: conflicts with ")
    assert 'conflicts with "first":\n- .data.k' in str(conflict)
    assert 'conflicts with "kubectl-edit" using v1:\n- .data.j' in str(conflict)
    assert str(conflict).endswith("(applying as 'reconciler'; another field manager owns "
                                  "these fields; --force-conflicts takes them)")


def test_dry_run_stores_nothing(api: Api):
    """dryRun=All answers the would-be object and stores nothing."""
    status, body = api.apply(f"{CM_PATH}/dry", cm("dry"), extra=[("dryRun", "All")])
    assert status == 201 and body["data"] == {"k": "v"}
    assert api("GET", f"{CM_PATH}/dry")[0] == 404


def test_missing_namespace_and_object_are_404_in_real_words(api: Api):
    """A missing namespace or object is 404 NotFound worded as the apiserver words it."""
    status, body = api.apply("/api/v1/namespaces/nowhere/configmaps/x",
                             {**cm("x"), "metadata": {"name": "x", "namespace": "nowhere"}})
    assert status == 404 and body["message"] == 'namespaces "nowhere" not found'
    status, body = api("GET", f"{CM_PATH}/absent")
    assert status == 404 and body["message"] == 'configmaps "absent" not found'


def test_list_items_carry_no_kind_and_selectors_filter(api: Api):
    """List items of built-in kinds carry no kind; set-based selectors filter."""
    api.apply(f"{CM_PATH}/a", cm("a"))
    status, body = api("GET", CM_PATH, query=[("labelSelector", "app in (x,y),tier notin (db)")])
    assert status == 200 and body["kind"] == "ConfigMapList"
    assert [(i["metadata"]["name"], i.get("kind")) for i in body["items"]] == [("a", None)]


def test_custom_resource_generation_moves_on_spec_changes_only(api: Api):
    """generation starts at 1 and moves on spec changes, not on annotations or status."""
    _, first = api.apply(f"{WC_PATH}/w", wc("w"))
    annotated = {**wc("w"), "metadata": {**wc("w")["metadata"], "annotations": {"a": "1"}}}
    _, second = api.apply(f"{WC_PATH}/w", annotated)
    # A status field of the test's own: the simulated controllers manage phase/conditions.
    _, status_patched = api("PATCH", f"{WC_PATH}/w/status", {"status": {"note": "kept"}},
                            content_type="application/merge-patch+json")
    _, changed = api.apply(f"{WC_PATH}/w", {**annotated, "spec": {**wc("w")["spec"],
                                                                  "region": "r2"}})
    generations = [o["metadata"]["generation"] for o in (first, second, status_patched, changed)]
    assert generations == [1, 1, 1, 2]
    assert changed["status"]["note"] == "kept"  # a main-resource write keeps status


def test_apply_of_an_undeclared_field_is_a_typed_patch_500(api: Api):
    """An undeclared or wrongly typed field fails building the typed patch: 500, not prune."""
    status, body = api.apply(f"{WC_PATH}/w", wc("w", colour="blue"))
    assert status == 500
    assert body["message"] == (
        f"failed to create typed patch object ({NS}/w; telco.example.com/v1alpha1, "
        "Kind=WorkloadCluster): .spec.colour: field not declared in schema")
    status, body = api.apply(f"{WC_PATH}/w", wc("w", controlPlane={"replicas": "three"}))
    assert status == 500
    assert body["message"].endswith(
        ".spec.controlPlane.replicas: expected numeric (int or float), got string")


def test_create_prunes_undeclared_fields_and_validates_with_422(api: Api):
    """A plain create prunes undeclared fields and answers 422 for schema violations."""
    status, body = api("POST", WC_PATH, wc("p", colour="blue"))
    assert status == 201 and "colour" not in body["spec"]
    strict, refused = api("POST", WC_PATH, wc("q", colour="blue"),
                          query=[("fieldValidation", "Strict")])
    assert strict == 400 and 'unknown field "spec.colour"' in refused["message"]
    missing = wc("m")
    del missing["spec"]["region"]
    status, body = api("POST", WC_PATH, missing)
    assert status == 422 and body["reason"] == "Invalid"
    assert {"reason": "FieldValueRequired", "message": "Required value",
            "field": "spec.region"} in body["details"]["causes"]


JOB_PATH = f"/apis/batch/v1/namespaces/{NS}/jobs"
DEPLOY_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments"


def job(name: str, *, image: str = "busybox:1.36") -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "c", "image": image}]}}}}


def deployment(name: str, *, app: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"matchLabels": {"app": app}},
                     "template": {"metadata": {"labels": {"app": app}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}}


def test_changing_an_immutable_field_is_422_naming_the_field(api: Api):
    """A Job's spec.template and a Deployment's spec.selector cannot change: 422 Invalid,
    one FieldValueInvalid cause naming the field, its message ending `field is immutable`."""
    assert api.apply(f"{JOB_PATH}/j", job("j"))[0] == 201
    status, body = api.apply(f"{JOB_PATH}/j", job("j", image="busybox:1.37"))
    assert status == 422 and body["reason"] == "Invalid"
    assert body["message"].startswith('Job.batch "j" is invalid: spec.template: Invalid value: ')
    ((cause),) = body["details"]["causes"]
    assert (cause["reason"], cause["field"]) == ("FieldValueInvalid", "spec.template")
    assert cause["message"].endswith(": field is immutable")
    assert api.apply(f"{DEPLOY_PATH}/d", deployment("d", app="a"))[0] == 201
    status, body = api.apply(f"{DEPLOY_PATH}/d", deployment("d", app="b"))
    assert status == 422 and body["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "field": "spec.selector",
         "message": 'Invalid value: {"matchLabels":{"app":"b"}}: field is immutable'}]
    assert body["message"] == ('Deployment.apps "d" is invalid: spec.selector: Invalid value: '
                               '{"matchLabels":{"app":"b"}}: field is immutable')


ROLE_PATH = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles"


def test_apply_of_an_undeclared_field_of_a_builtin_kind_is_a_typed_patch_500(api: Api):
    """Built-in kinds are typed by the server's own OpenAPI: an undeclared or wrongly typed
    field fails building the typed patch, a 500, as it does for custom resources (what
    `kubectl apply --server-side` shows as `Error from server: failed to create ...`)."""
    status, body = api.apply(f"{CM_PATH}/bad", {**cm("bad"), "bogus": 1})
    assert status == 500
    assert body["message"] == (f"failed to create typed patch object ({NS}/bad; /v1, "
                               "Kind=ConfigMap): .bogus: field not declared in schema")
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "r", "namespace": NS},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"],
                       "bogus": "x"}]}
    status, body = api.apply(f"{ROLE_PATH}/r", role)
    assert status == 500 and body["message"].endswith(
        "Kind=Role): .rules[0].bogus: field not declared in schema")
    wrong = deployment("d", app="a")
    wrong["spec"]["replicas"] = "two"
    status, body = api.apply(f"{DEPLOY_PATH}/d", wrong)
    assert status == 500 and body["message"] == (
        f"failed to create typed patch object ({NS}/d; apps/v1, Kind=Deployment): "
        ".spec.replicas: expected numeric (int or float), got string")


def test_a_kind_not_served_is_named_a_missing_crd_only_when_it_is_not_built_in(
        api: Api, any_cluster: ClusterUnderTest) -> None:
    """The adapter asks for a CRD only for kinds outside Kubernetes' own groups; for a
    built-in kind it names the versions the cluster does serve."""
    del api  # the fixture's namespace and CRDs: a cluster in its usual state
    adapter = kube.connect(kubeconfig=any_cluster.direct_kubeconfig)
    try:
        messages = {}
        for api_version, kind in (("batch/v1beta1", "CronJob"), ("extensions/v1beta1", "Ingress"),
                                  ("gateway.networking.k8s.io/v1", "Gateway")):
            with pytest.raises(errors.NotFoundError) as caught:
                adapter.resource(api_version=api_version, kind=kind)
            messages[kind] = str(caught.value)
    finally:
        adapter.close()
    assert messages == {
        "CronJob": "the cluster does not serve kind 'CronJob' in 'batch/v1beta1' "
                   "(it serves CronJob as 'batch/v1')",
        "Ingress": "the cluster does not serve kind 'Ingress' in 'extensions/v1beta1', a "
                   "Kubernetes API (is the API version enabled, or has Kubernetes removed it?)",
        "Gateway": "the cluster does not serve kind 'Gateway' in "
                   "'gateway.networking.k8s.io/v1' (is its CRD installed?)",
    }


def test_a_second_manager_conflicts_on_omitted_zeros_and_defaulted_atomic_fields(api: Api):
    """Applying the same Deployment as another manager conflicts where the stored object is
    not what was applied: a zero the typed object leaves out (`minReadySeconds: 0`) and an
    atomic map the server defaulted (`fieldRef` gains `apiVersion: v1`); a status write in
    between takes neither field from the first manager."""
    body = deployment("d", app="a")
    body["spec"]["minReadySeconds"] = 0
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    assert api.apply(f"{DEPLOY_PATH}/d", body, manager="first")[0] == 201
    status, _ = api("PATCH", f"{DEPLOY_PATH}/d/status", {"status": {"collisionCount": 0}},
                    content_type="application/merge-patch+json",
                    query=[("fieldManager", "status-writer")])
    assert status == 200
    status, conflict = api.apply(f"{DEPLOY_PATH}/d", body, manager="second")
    assert status == 409
    assert sorted(c["field"] for c in conflict["details"]["causes"]) == [
        ".spec.minReadySeconds",
        '.spec.template.spec.containers[name="c"].env[name="POD"].valueFrom.fieldRef']
    again, same = api.apply(f"{DEPLOY_PATH}/d", body, manager="first")
    assert again == 200 and "minReadySeconds" not in same["spec"]
