"""Discovery, health and CRD serving, through raw HTTP, the official client and kubectl."""

from __future__ import annotations

import kubernetes
import pytest
from kubernetes import dynamic

from reconciler import localcluster
from tests.localcluster import conftest, crds

AGGREGATED_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


def test_version_and_health_endpoints_answer(raw: conftest.Raw) -> None:
    """/version names a v1.32 server and the health endpoints answer a plain `ok`."""
    version = raw.request("GET", "/version").json()
    assert (version["major"], version["minor"]) == ("1", "32")
    for path in ("/healthz", "/readyz", "/livez"):
        reply = raw.request("GET", path)
        assert (reply.status, reply.body) == (200, b"ok")


def test_core_discovery_lists_builtin_kinds_with_short_names(raw: conftest.Raw) -> None:
    """/api/v1 lists the built-in core kinds with their real short names and scopes."""
    assert raw.request("GET", "/api").json()["versions"] == ["v1"]
    resources = {r["name"]: r for r in raw.request("GET", "/api/v1").json()["resources"]}
    assert resources["namespaces"]["namespaced"] is False
    assert resources["namespaces"]["shortNames"] == ["ns"]
    assert resources["configmaps"]["shortNames"] == ["cm"]
    assert resources["serviceaccounts"]["shortNames"] == ["sa"]
    assert resources["services"]["shortNames"] == ["svc"]
    assert resources["secrets"]["kind"] == "Secret"
    assert "watch" in resources["configmaps"]["verbs"]


def test_group_discovery_lists_apps_and_apiextensions(raw: conftest.Raw) -> None:
    """/apis lists apps and apiextensions.k8s.io and each group version lists its kinds."""
    groups = {g["name"] for g in raw.request("GET", "/apis").json()["groups"]}
    assert {"apps", "apiextensions.k8s.io"} <= groups
    apps = raw.request("GET", "/apis/apps/v1").json()["resources"]
    names = {r["name"] for r in apps}
    assert {"deployments", "deployments/status"} <= names
    crd = raw.request("GET", "/apis/apiextensions.k8s.io/v1").json()["resources"][0]
    assert crd["kind"] == "CustomResourceDefinition" and "crd" in crd["shortNames"]


def test_aggregated_discovery_request_gets_the_legacy_form(raw: conftest.Raw) -> None:
    """An Accept header asking for aggregated discovery is answered in the legacy JSON form."""
    reply = raw.request("GET", "/apis", headers={"Accept": AGGREGATED_ACCEPT})
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["kind"] == "APIGroupList"


def test_unknown_paths_answer_like_the_real_server(raw: conftest.Raw) -> None:
    """Unknown groups get the mux's 404 text; unknown resources in a served group a Status."""
    assert raw.request("GET", "/apis/nope.example.com/v1/things").status == 404
    assert raw.request("GET", "/openapi/v4").status == 404
    reply = raw.request("GET", "/api/v1/widgets")
    assert reply.status == 404
    assert reply.json()["message"] == "the server could not find the requested resource"


def test_crd_is_served_at_once_and_established(telco: conftest.Raw) -> None:
    """An applied CRD is Established with accepted names and its group version is discovered."""
    crd = telco.request(
        "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
        "workloadclusters.telco.example.com").json()
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert crd["status"]["acceptedNames"]["kind"] == "WorkloadCluster"
    groups = {g["name"]: g for g in telco.request("GET", "/apis").json()["groups"]}
    assert groups[crds.GROUP]["preferredVersion"]["version"] == crds.VERSION
    listed = telco.request("GET", f"/apis/{crds.API_VERSION}").json()["resources"]
    entries = {r["name"]: r for r in listed}
    assert entries["workloadclusters"]["shortNames"] == ["wc"]
    assert entries["workloadclusters"]["namespaced"] is True
    assert "workloadclusters/status" in entries


def test_deleting_a_crd_stops_serving_it_and_deletes_its_objects(telco: conftest.Raw) -> None:
    """Deleting the CRD removes its objects and its group from discovery."""
    reply = telco.apply(f"{conftest.WC_PATH}/a", crds.workload_cluster("a"))
    assert reply.status == 201
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/workloadclusters." + crds.GROUP
    deleted = telco.request("DELETE", path)
    assert deleted.status == 200
    assert deleted.json()["metadata"]["deletionTimestamp"]
    assert telco.request("GET", path).status == 404
    resources = telco.request("GET", f"/apis/{crds.API_VERSION}").json()["resources"]
    assert "workloadclusters" not in {r["name"] for r in resources}
    assert telco.request("GET", f"{conftest.WC_PATH}/a").status == 404
    # Recreating the CRD does not bring the old objects back.
    conftest.install_crds(telco)
    assert telco.request("GET", conftest.WC_PATH).json()["items"] == []


def test_dynamic_client_discovers_a_crd_kind(telco: conftest.Raw,
                                            api_client: kubernetes.client.ApiClient,
                                            tmp_path: object) -> None:
    """The official dynamic client finds the CRD kind and can create and read it."""
    client = dynamic.DynamicClient(api_client, cache_file=str(tmp_path) + "/cache.json")
    resource = client.resources.get(api_version=crds.API_VERSION, kind="WorkloadCluster")
    assert resource.namespaced
    created = resource.create(body=crds.workload_cluster("dyn"), namespace="default")
    assert created.metadata.generation == 1
    assert resource.get(name="dyn", namespace="default").spec.region == "eu-west"


def test_kubectl_lists_namespaces_and_api_resources(kubectl: conftest.Kubectl) -> None:
    """kubectl reads namespaces and the discovered resources, short names included."""
    namespaces = kubectl.json("get", "ns")
    assert namespaces["kind"] == "List"
    names = {item["metadata"]["name"] for item in namespaces["items"]}
    assert {"default", "kube-system", "kube-public"} <= names
    table = kubectl("api-resources").stdout
    assert "configmaps" in table and "cm" in table and "deployments" in table


def test_kubectl_sees_a_crd_kind_after_the_crd_is_applied(
        telco: conftest.Raw, kubectl: conftest.Kubectl) -> None:
    """After the CRD is applied, kubectl gets its kind by plural and by short name."""
    telco.apply(f"{conftest.WC_PATH}/edge", crds.workload_cluster("edge"))
    listed = kubectl.json("get", "workloadclusters")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["edge"]
    assert "edge" in kubectl("get", "wc").stdout


@pytest.mark.parametrize("path", ["/api/v1/namespaces/default", "/apis/apps/v1/deployments"])
def test_wrong_token_is_unauthorized(cluster: localcluster.LocalCluster, path: str) -> None:
    """A bearer token other than the kubeconfig's is refused with 401."""
    reply = conftest.Raw(cluster.url).request(
        "GET", path, headers={"Authorization": "Bearer wrong"})
    assert reply.status == 401
    assert reply.json()["reason"] == "Unauthorized"


def test_cluster_scoped_crd_serves_objects_without_namespace(raw: conftest.Raw) -> None:
    """A CRD with scope Cluster serves its objects outside namespaces, and not inside them."""
    crd = crds.copy_of(crds.WORKLOAD_CLUSTER_CRD)
    crd["metadata"]["name"] = f"sites.{crds.GROUP}"
    crd["spec"]["scope"] = "Cluster"
    crd["spec"]["names"] = {"plural": "sites", "singular": "site", "kind": "Site"}
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    assert raw.request("POST", path, crd).status == 201
    site = {"apiVersion": crds.API_VERSION, "kind": "Site", "metadata": {"name": "sfo"},
            "spec": {"region": "us-west"}}
    created = raw.apply(f"/apis/{crds.API_VERSION}/sites/sfo", site)
    assert created.status == 201
    assert "namespace" not in created.json()["metadata"]
    listed = raw.request("GET", f"/apis/{crds.API_VERSION}").json()["resources"]
    assert {r["name"]: r["namespaced"] for r in listed}["sites"] is False
    assert raw.request("GET", f"/apis/{crds.API_VERSION}/namespaces/default/sites/sfo"
                       ).status == 404
