"""The CRDs and objects the local cluster tests use (written here, not read from sample-repo)."""

from __future__ import annotations

import copy
from typing import Any

GROUP = "telco.example.com"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

_STATUS = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _crd(*, kind: str, plural: str, short: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                      "listKind": f"{kind}List", "shortNames": [short]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": spec, "status": _STATUS},
                }},
                "additionalPrinterColumns": [
                    {"name": "Ready", "type": "string",
                     "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }],
        },
    }


WORKLOAD_CLUSTER_CRD = _crd(
    kind="WorkloadCluster", plural="workloadclusters", short="wc",
    spec={"type": "object", "required": ["region"], "properties": {
        "region": {"type": "string"},
        "version": {"type": "string"},
        "nodes": {"type": "integer"},
    }},
)

NETWORK_FUNCTION_CRD = _crd(
    kind="NetworkFunction", plural="networkfunctions", short="nf",
    spec={"type": "object", "properties": {
        "clusterRef": {"type": "string"},
        "type": {"type": "string", "enum": ["UPF", "AMF", "SMF"]},
        "version": {"type": "string"},
        "replicas": {"type": "integer"},
    }},
)


def workload_cluster(name: str, *, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A WorkloadCluster manifest."""
    body = {"region": "eu-west", "version": "1.30", "nodes": 3}
    body.update(spec)
    return {"apiVersion": API_VERSION, "kind": "WorkloadCluster",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}


def network_function(name: str, *, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A NetworkFunction manifest."""
    body = {"type": "UPF", "version": "2.4", "replicas": 2}
    body.update(spec)
    return {"apiVersion": API_VERSION, "kind": "NetworkFunction",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}


def copy_of(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy, so tests can edit fixtures freely."""
    return copy.deepcopy(obj)
