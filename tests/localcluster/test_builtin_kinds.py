"""Every built-in kind of Kubernetes v1.37 is served from the captured discovery and stored
generically: written, read, listed, re-applied without a change, deleted (issue #10, item 8).

The expected defaults below were read off kube-apiserver v1.37.2 for the same objects;
tests/e2e/test_builtin_kinds.py compares the whole corpus with a real server.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from reconciler import kubekinds
from reconciler.localcluster import builtinschema, resources
from tests.localcluster import conftest

NS = "default"
POD_TEMPLATE = {"metadata": {"labels": {"app": "a"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}

# One object per kind, as a manifest would write it; path is where it lives.
SAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1/clusterroles/system:reader", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "system:reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
    "Role": (f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/r", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "r", "namespace": NS},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
    "RoleBinding": (f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings/rb", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "rb", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": NS}]}),
    "ValidatingWebhookConfiguration": (
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/hook", {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "hook"},
            "webhooks": [{"name": "validate.example.com", "sideEffects": "None",
                          "admissionReviewVersions": ["v1"],
                          "clientConfig": {"service": {"name": "hook", "namespace": NS}},
                          "rules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                                     "operations": ["CREATE"],
                                     "resources": ["deployments"]}]}]}),
    "APIService": ("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io", {
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": "v1beta1.metrics.k8s.io"},
        "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
                 "versionPriority": 100, "insecureSkipTLSVerify": True,
                 "service": {"name": "metrics-server", "namespace": "kube-system"}}}),
    "StatefulSet": (f"/apis/apps/v1/namespaces/{NS}/statefulsets/db", {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": NS},
        "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "a"}},
                 "template": POD_TEMPLATE}}),
    "DaemonSet": (f"/apis/apps/v1/namespaces/{NS}/daemonsets/agent", {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": POD_TEMPLATE}}),
    "Ingress": (f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/web", {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "a.example.com", "http": {
            "paths": [{"path": "/", "pathType": "Prefix", "backend": {
                "service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    "PodDisruptionBudget": (f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/pdb", {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "pdb", "namespace": NS},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "a"}}}}),
    "IngressClass": ("/apis/networking.k8s.io/v1/ingressclasses/nginx", {
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}),
    "NetworkPolicy": (f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/np", {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "np", "namespace": NS},
        "spec": {"podSelector": {"matchLabels": {"app": "a"}},
                 "ingress": [{"ports": [{"port": 80}]}]}}),
}

# What kube-apiserver v1.37.2 stores for SAMPLES beyond what they say (metadata aside).
DEFAULTED: dict[str, dict[str, Any]] = {
    "ValidatingWebhookConfiguration": {"webhooks": [{
        "name": "validate.example.com", "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "clientConfig": {"service": {"name": "hook", "namespace": NS, "port": 443}},
        "rules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"],
                   "resources": ["deployments"], "scope": "*"}],
        "failurePolicy": "Fail", "matchPolicy": "Equivalent", "namespaceSelector": {},
        "objectSelector": {}, "timeoutSeconds": 10}]},
    "APIService": {"spec": {**SAMPLES["APIService"][1]["spec"], "service": {
        "name": "metrics-server", "namespace": "kube-system", "port": 443}}},
    "NetworkPolicy": {"spec": {"podSelector": {"matchLabels": {"app": "a"}},
                               "ingress": [{"ports": [{"port": 80, "protocol": "TCP"}]}],
                               "policyTypes": ["Ingress"]}},
}


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata",
                                                      "status")}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_builtin_kind_is_stored_read_listed_reapplied_and_deleted(
        raw: conftest.Raw, kind: str) -> None:
    """An object of the kind is created by apply, read back, listed, left as it is by the
    same apply again (same resourceVersion), and deleted."""
    path, body = SAMPLES[kind]
    created = raw.apply(path, body)
    assert created.status == 201, created.body
    obj = created.json()
    assert obj["kind"] == kind and obj["metadata"]["uid"]
    assert raw.request("GET", path).json() == obj
    collection = path.rsplit("/", 1)[0]
    listing = raw.request("GET", collection).json()
    assert listing["kind"] == f"{kind}List"
    assert [i["metadata"]["name"] for i in listing["items"]] == [body["metadata"]["name"]]
    again = raw.apply(path, copy.deepcopy(body))
    assert again.status == 200
    assert again.json()["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    assert raw.request("DELETE", path).status == 200
    assert raw.request("GET", path).status == 404


@pytest.mark.parametrize("kind", sorted(DEFAULTED))
def test_builtin_kind_gets_the_real_servers_defaults(raw: conftest.Raw, kind: str) -> None:
    """The fields a real server defaults for the kind are defaulted alike."""
    path, body = SAMPLES[kind]
    assert _spec_of(raw.apply(path, body).json()) == DEFAULTED[kind]


def test_workload_defaults_match_the_real_server(raw: conftest.Raw) -> None:
    """StatefulSets and DaemonSets get their update strategies, history limits and pod
    template defaults, as kube-apiserver v1.37.2 stores them."""
    sts = raw.apply(*SAMPLES["StatefulSet"]).json()["spec"]
    assert sts["updateStrategy"] == {"type": "RollingUpdate",
                                     "rollingUpdate": {"partition": 0, "maxUnavailable": 1}}
    assert (sts["replicas"], sts["podManagementPolicy"], sts["revisionHistoryLimit"]) == (
        1, "OrderedReady", 10)
    assert sts["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                           "whenScaled": "Retain"}
    ds = raw.apply(*SAMPLES["DaemonSet"]).json()["spec"]
    assert ds["updateStrategy"] == {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    pod = ds["template"]["spec"]
    assert (pod["restartPolicy"], pod["dnsPolicy"], pod["schedulerName"]) == (
        "Always", "ClusterFirst", "default-scheduler")
    assert pod["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_generation_is_kept_by_the_kinds_a_real_server_keeps_it_for(raw: conftest.Raw) -> None:
    """Workloads, policies and webhook configurations have a generation; RBAC kinds and
    APIServices have none."""
    for kind in SAMPLES:
        obj = raw.apply(*SAMPLES[kind]).json()
        has = "generation" in obj["metadata"]
        group = obj["apiVersion"].rpartition("/")[0]
        assert has == ((group, kind) in resources.GENERATION_KINDS), kind


def test_rbac_names_may_hold_colons(raw: conftest.Raw) -> None:
    """RBAC objects need only a path-segment name (`system:reader`); a `/` is refused."""
    path, body = SAMPLES["ClusterRole"]
    assert raw.apply(path, body).status == 201
    bad = {**body, "metadata": {"name": "a%b"}}
    reply = raw.apply("/apis/rbac.authorization.k8s.io/v1/clusterroles/a%25b", bad)
    assert reply.status == 422
    assert reply.json()["details"]["causes"][0]["message"] == (
        "Invalid value: \"a%b\": may not contain '%'")


def test_apply_of_an_undeclared_field_of_a_builtin_kind_is_a_typed_patch_500(
        raw: conftest.Raw) -> None:
    """As for custom resources, an undeclared or wrongly typed field of a built-in kind
    fails building the typed patch (kube-apiserver v1.37.2's words)."""
    path, body = SAMPLES["Role"]
    bad = copy.deepcopy(body)
    bad["rules"][0]["bogus"] = "x"
    reply = raw.apply(path, bad)
    assert reply.status == 500
    assert reply.json()["message"] == (
        "failed to create typed patch object (default/r; rbac.authorization.k8s.io/v1, "
        "Kind=Role): .rules[0].bogus: field not declared in schema")
    path, body = SAMPLES["StatefulSet"]
    wrong = copy.deepcopy(body)
    wrong["spec"]["replicas"] = "two"
    reply = raw.apply(path, wrong)
    assert reply.status == 500
    assert reply.json()["message"].endswith(
        ".spec.replicas: expected numeric (int or float), got string")


def test_an_unknown_field_of_a_builtin_kind_is_dropped_with_a_warning(
        raw: conftest.Raw) -> None:
    """A create with an unknown field stores the object without it and warns; with
    fieldValidation=Strict it is refused with 400."""
    _, body = SAMPLES["IngressClass"]
    extra = {**copy.deepcopy(body), "colour": "blue"}
    reply = raw.request("POST", "/apis/networking.k8s.io/v1/ingressclasses", extra)
    assert reply.status == 201 and "colour" not in reply.json()
    assert 'unknown field "colour"' in reply.headers.get("warning", "")
    strict = raw.request("POST", "/apis/networking.k8s.io/v1/ingressclasses?"
                         "fieldValidation=Strict", {**extra, "metadata": {"name": "other"}})
    assert strict.status == 400
    assert 'unknown field "colour"' in strict.json()["message"]


def test_kubectl_lists_and_describes_builtin_kinds(kubectl: conftest.Kubectl) -> None:
    """kubectl applies, gets (as a table, by short name) and deletes built-in kinds."""
    manifest = "\n".join(json.dumps(SAMPLES[k][1]) for k in (
        "ClusterRole", "StatefulSet", "PodDisruptionBudget"))
    kubectl("apply", "--server-side", "-f", "-", stdin=manifest)
    assert "system:reader" in kubectl("get", "clusterroles").stdout
    assert kubectl.json("get", "sts", "db")["spec"]["serviceName"] == "db"
    assert "pdb" in kubectl("get", "pdb").stdout
    kubectl("delete", "-f", "-", stdin=manifest)
    assert kubectl("get", "sts").stdout == ""


def _served(entries: list[dict[str, Any]], group: str) -> list[dict[str, Any]]:
    """The captured APIResources the local cluster serves: resources it stores, and
    their status subresources."""
    stored = {e["name"] for e in entries if "/" not in e["name"] and "get" in e["verbs"]
              and (group, e["name"]) not in resources.NOT_SERVED}
    return [e for e in entries if e["name"] in stored
            or (e["name"].endswith("/status") and e["name"].split("/")[0] in stored)]


def test_discovery_is_the_captured_file_less_what_holds_no_objects(raw: conftest.Raw) -> None:
    """Each group version's resources are the real server's (builtin-kinds-v1.37.json),
    less the create-only reviews, ComponentStatus and subresources other than status;
    /apis lists the groups in the real server's order with its preferred versions."""
    captured = resources.discovery()["groups"]
    for group in captured:
        for entry in group["versions"]:
            path = f"/apis/{group['name']}/{entry['version']}" if group["name"] else "/api/v1"
            expected = _served(entry["resources"], group["name"])
            reply = raw.request("GET", path)
            if not expected:
                assert reply.status == 404, path  # authentication.k8s.io and kin
                continue
            assert reply.json()["resources"] == expected, path
    listed = raw.request("GET", "/apis").json()["groups"]
    served = [g for g in captured if g["name"] and any(
        _served(v["resources"], g["name"]) for v in g["versions"])]
    assert [(g["name"], g["preferredVersion"]["version"]) for g in listed] == [
        (g["name"], g["preferredVersion"]) for g in served]


def test_captured_discovery_agrees_with_the_shared_kind_tables() -> None:
    """Every captured group is one kubekinds.BUILTIN_GROUPS names, and each kind's scope
    is the one kubekinds.CLUSTER_SCOPED gives it."""
    for group in resources.discovery()["groups"]:
        assert kubekinds.serves_itself(group["name"]) and group["name"] in (
            kubekinds.BUILTIN_GROUPS), group["name"]
        for entry in group["versions"]:
            for item in entry["resources"]:
                if "/" in item["name"]:
                    continue
                assert item["namespaced"] == kubekinds.namespaced(
                    group=group["name"], kind=item["kind"]), item["kind"]


def test_a_kinds_schema_is_resolved_only_when_first_looked_into() -> None:
    """Building the built-in kinds resolves none of their schemas (the shipped definitions
    are read once, when the first object of a built-in kind is written); looking into a
    kind's schema resolves that kind's only."""
    fresh = resources._builtins()
    assert all(isinstance(t.schema, builtinschema.LazyKind) and "_node" not in vars(t.schema)
               for t in fresh)
    role = next(t for t in fresh if t.kind == "Role")
    assert role.schema is not None and "rules" in role.schema["properties"]
    assert [t.kind for t in fresh if "_node" in vars(t.schema or {})] == ["Role"]


def test_a_deployment_without_a_selector_is_refused_with_the_real_servers_causes(
        raw: conftest.Raw) -> None:
    """A Deployment without spec.selector gets the two causes kube-apiserver v1.37.2 gives
    (the schema's `required` and the selector rule name the field once), the labels
    shown as JSON."""
    body = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": NS}, "spec": {"template": POD_TEMPLATE}}
    reply = raw.apply(f"/apis/apps/v1/namespaces/{NS}/deployments/d", body)
    assert reply.status == 422
    assert reply.json()["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.selector"},
        {"reason": "FieldValueInvalid", "field": "spec.template.metadata.labels",
         "message": 'Invalid value: {"app":"a"}: `selector` does not match '
                    "template `labels`"}]
