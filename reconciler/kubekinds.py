"""What Kubernetes serves itself: its API groups and which of its kinds are cluster-scoped.

One table for every module that must tell a built-in kind from a custom one without
asking a cluster: the manager's checks (`manager.kubeschema`, `manager.plan`) and the
adapter's messages (`kube`). reconciler/localcluster/builtin-kinds-v1.37.json, the
discovery of a real kube-apiserver, is checked against these tables by the tests.
"""

from __future__ import annotations

import functools
import importlib.resources
import json

# A real kube-apiserver's discovery (every kind it serves by default), inside the package.
DISCOVERY_FILE = "localcluster/builtin-kinds-v1.37.json"

# Built-in kinds that are not namespaced (Kubernetes 1.37, alpha and beta APIs included,
# and a few removed since), by (group, kind).
CLUSTER_SCOPED = frozenset({
    ("", "Namespace"), ("", "Node"), ("", "PersistentVolume"), ("", "ComponentStatus"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"),
    ("storage.k8s.io", "StorageClass"), ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"), ("storage.k8s.io", "VolumeAttachment"),
    ("storage.k8s.io", "VolumeAttributesClass"),
    ("scheduling.k8s.io", "PriorityClass"), ("node.k8s.io", "RuntimeClass"),
    ("networking.k8s.io", "IngressClass"), ("networking.k8s.io", "IPAddress"),
    ("networking.k8s.io", "ServiceCIDR"), ("networking.k8s.io", "ClusterCIDR"),
    ("resource.k8s.io", "ResourceClass"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("certificates.k8s.io", "ClusterTrustBundle"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("resource.k8s.io", "DeviceClass"), ("resource.k8s.io", "ResourceSlice"),
    ("resource.k8s.io", "DeviceTaintRule"),
    ("authentication.k8s.io", "TokenReview"), ("authentication.k8s.io", "SelfSubjectReview"),
    ("authorization.k8s.io", "SubjectAccessReview"),
    ("authorization.k8s.io", "SelfSubjectAccessReview"),
    ("authorization.k8s.io", "SelfSubjectRulesReview"),
    ("storagemigration.k8s.io", "StorageVersionMigration"),
    ("internal.apiserver.k8s.io", "StorageVersion"),
})

# The API groups Kubernetes 1.37 serves itself, in any version (alpha and beta groups
# included), and the dotless groups it served before (`extensions`). A group of
# `*.k8s.io` not listed here (`gateway.networking.k8s.io`, `snapshot.storage.k8s.io`)
# comes from CRDs.
BUILTIN_GROUPS = frozenset({
    "", "admissionregistration.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io",
    "apps", "authentication.k8s.io", "authorization.k8s.io", "autoscaling", "batch",
    "certificates.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io",
    "extensions", "flowcontrol.apiserver.k8s.io", "internal.apiserver.k8s.io",
    "networking.k8s.io", "node.k8s.io", "policy", "rbac.authorization.k8s.io",
    "resource.k8s.io", "scheduling.k8s.io", "storage.k8s.io", "storagemigration.k8s.io",
})


def is_builtin_group(group: str) -> bool:
    """Whether the API group is one Kubernetes serves itself (core, `apps`, `*.k8s.io`).

    A loose rule, for the manager's checks: any `*.k8s.io` group counts. Where a wrong
    answer misleads (naming a missing CRD), `serves_itself()` is exact.
    """
    return group == "" or "." not in group or group.endswith(".k8s.io")


def serves_itself(group: str) -> bool:
    """Whether Kubernetes serves the group itself (BUILTIN_GROUPS): no CRD can define it,
    as a CRD's group must have a dot."""
    return group in BUILTIN_GROUPS or "." not in group


def namespaced(*, group: str, kind: str) -> bool:
    """Whether a built-in kind is namespaced."""
    return (group, kind) not in CLUSTER_SCOPED


@functools.cache
def builtin_resources() -> dict[tuple[str, str], str]:
    """(group, kind) -> resource (its plural) of every kind kube-apiserver v1.37.2 serves
    by default, from the discovery the embedded cluster ships (the same plural in every
    version)."""
    text = (importlib.resources.files("reconciler") / DISCOVERY_FILE).read_text("utf-8")
    found: dict[tuple[str, str], str] = {}
    for group in json.loads(text)["groups"]:
        for version in group["versions"]:
            for resource in version["resources"]:
                if "/" not in resource["name"]:  # subresources: status, scale, ...
                    found.setdefault((group["name"], resource["kind"]), resource["name"])
    return found
