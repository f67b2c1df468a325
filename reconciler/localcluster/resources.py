"""The kinds the local cluster serves (built-in and from CRDs) and their discovery documents.

Called by the store (to resolve kinds and rebuild after CRD changes) and by the API handlers.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from reconciler.localcluster import builtinschema

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CR_VERBS = ("delete", "deletecollection", "get", "list", "patch", "create", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")


@dataclasses.dataclass(frozen=True)
class ResourceType:
    """One served resource: where it lives in the API and how its objects behave."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = VERBS
    has_status: bool = False  # a status subresource: main writes keep status, /status only status
    custom: bool = False  # served from a CRD
    storage_version: str = ""
    # The openAPIV3Schema of a custom kind's version; a built-in kind's shipped schema.
    schema: Mapping[str, Any] | None = None
    printer_columns: tuple[Mapping[str, Any], ...] = ()
    returns_deleted: bool = False  # DELETE answers with the object instead of a Status
    list_kind: str = ""

    @property
    def group_version(self) -> str:
        """`v1` or `apps/v1`."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> tuple[str, str]:
        """The storage key: objects are shared by every version of a group resource."""
        return (self.group, self.plural)

    @property
    def list_kind_name(self) -> str:
        """`ConfigMapList`."""
        return self.list_kind or f"{self.kind}List"

    @property
    def tracks_generation(self) -> bool:
        """Whether metadata.generation is kept (Deployments, CRDs, custom resources)."""
        return self.custom or (self.group, self.kind) in GENERATION_KINDS


DISCOVERY_FILE = Path(__file__).with_name("builtin-kinds-v1.37.json")

# Kinds a real server lists but that hold no objects, left out: the create-only reviews
# (TokenReview, SubjectAccessReview and kin, Binding: no `get` verb) and ComponentStatus
# (a read-only view the server computes). Subresources other than `status` (scale, log,
# exec, eviction, token, ...) are not served either; see docs/local-cluster.md.
NOT_SERVED = frozenset({("", "componentstatuses")})

# Built-in kinds whose objects keep metadata.generation, as kube-apiserver v1.37.2's
# strategies set it (1 on create, bumped by a spec change): read off the real server for
# the corpus's kinds and tests/localcluster/test_builtin_kinds.py's, from the strategies'
# source for the others.
GENERATION_KINDS = frozenset({
    ("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"), ("", "ReplicationController"), ("", "Pod"),
    ("batch", "Job"), ("batch", "CronJob"),
    ("policy", "PodDisruptionBudget"), ("autoscaling", "HorizontalPodAutoscaler"),
    ("networking.k8s.io", "NetworkPolicy"), ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "IngressClass"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("resource.k8s.io", "DeviceClass"), ("resource.k8s.io", "ResourceSlice"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
})
# Built-in kinds whose DELETE answers with the object rather than a Status.
RETURNS_DELETED = frozenset({("", "Service"), ("", "ServiceAccount")})


@functools.cache
def discovery() -> dict[str, Any]:
    """The captured discovery of kube-apiserver v1.37.2 (DISCOVERY_FILE), read once."""
    data: dict[str, Any] = json.loads(DISCOVERY_FILE.read_text())
    return data


def _builtins() -> tuple[ResourceType, ...]:
    """A ResourceType for each captured kind that holds objects (none of their schemas
    read yet)."""
    out: list[ResourceType] = []
    for group in discovery()["groups"]:
        for entry in group["versions"]:
            listed = entry["resources"]
            subresources = {r["name"] for r in listed if "/" in r["name"]}
            for resource in listed:
                plural = resource["name"]
                if ("/" in plural or "get" not in resource.get("verbs", ())
                        or (group["name"], plural) in NOT_SERVED):
                    continue
                key = (group["name"], resource["kind"])
                out.append(ResourceType(
                    group=group["name"], version=entry["version"], plural=plural,
                    singular=resource.get("singularName") or resource["kind"].lower(),
                    kind=resource["kind"], namespaced=bool(resource["namespaced"]),
                    short_names=tuple(resource.get("shortNames") or ()),
                    categories=tuple(resource.get("categories") or ()),
                    verbs=tuple(resource.get("verbs") or VERBS),
                    has_status=f"{plural}/status" in subresources,
                    returns_deleted=key in RETURNS_DELETED,
                    schema=builtinschema.LazyKind(group=group["name"], version=entry["version"],
                                                  kind=resource["kind"]),
                ))
    return tuple(out)


BUILTINS: tuple[ResourceType, ...] = _builtins()

BUILTIN_GROUP_ORDER = tuple(g["name"] for g in discovery()["groups"] if g["name"])


def types_from_crd(crd: Mapping[str, Any]) -> list[ResourceType]:
    """The served versions of one established CRD, as resource types."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    plural = names.get("plural") or ""
    kind = names.get("kind") or ""
    if not (group and plural and kind):
        return []
    versions = [v for v in spec.get("versions") or [] if isinstance(v, dict)]
    storage = next((v.get("name", "") for v in versions if v.get("storage")), "")
    out: list[ResourceType] = []
    for v in versions:
        if not v.get("served", False) or not v.get("name"):
            continue
        subresources = v.get("subresources") or {}
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        out.append(
            ResourceType(
                group=group,
                version=v["name"],
                plural=plural,
                singular=names.get("singular") or kind.lower(),
                kind=kind,
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                verbs=CR_VERBS,
                has_status=isinstance(subresources, dict) and "status" in subresources,
                custom=True,
                storage_version=storage,
                schema=schema if isinstance(schema, dict) else None,
                printer_columns=tuple(v.get("additionalPrinterColumns") or ()),
                list_kind=names.get("listKind") or f"{kind}List",
            )
        )
    return out


_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key of Kubernetes version names: GA > beta > alpha, higher numbers first."""
    match = _VERSION_RE.match(version)
    if not match:
        return (3, 0, 0, version)
    major = int(match.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[match.group(2)]
    minor = int(match.group(3) or 0)
    return (stage, -major, -minor, "")


class Registry:
    """An immutable view of every served resource; the store swaps it when CRDs change."""

    def __init__(self, types: Iterable[ResourceType]) -> None:
        self.types: tuple[ResourceType, ...] = tuple(types)
        self._by_gvr = {(t.group, t.version, t.plural): t for t in self.types}
        self._gv = {(t.group, t.version) for t in self.types}

    def lookup(self, *, group: str, version: str, plural: str) -> ResourceType | None:
        """The type served at /apis/group/version/plural, or None."""
        return self._by_gvr.get((group, version, plural))

    def serves(self, *, group: str, version: str) -> bool:
        """Whether the group version has any resource."""
        return (group, version) in self._gv

    def of_group_resource(self, group: str, plural: str) -> list[ResourceType]:
        """Every served version of a group resource."""
        return [t for t in self.types if t.group == group and t.plural == plural]

    def groups(self) -> list[tuple[str, list[str]]]:
        """Named groups (not core) with their served versions, preferred first."""
        seen: dict[str, set[str]] = {}
        for t in self.types:
            if t.group:
                seen.setdefault(t.group, set()).add(t.version)
        builtin = [g for g in BUILTIN_GROUP_ORDER if g in seen]
        custom = sorted(g for g in seen if g not in BUILTIN_GROUP_ORDER)
        return [(g, sorted(seen[g], key=version_priority)) for g in builtin + custom]

    def resources(self, *, group: str, version: str) -> list[ResourceType]:
        """The types of one group version, in a stable order."""
        return [t for t in self.types if t.group == group and t.version == version]


@functools.cache
def _captured() -> dict[tuple[str, str, str], dict[str, Any]]:
    """The real server's APIResource entries, by group, version and name."""
    return {(g["name"], v["version"], r["name"]): r
            for g in discovery()["groups"] for v in g["versions"] for r in v["resources"]}


def api_resource(t: ResourceType) -> list[dict[str, Any]]:
    """The APIResource entries of one type (plus its status subresource): a built-in
    kind's as the real server lists them (storageVersionHash included)."""
    if not t.custom:
        names = (t.plural, f"{t.plural}/status") if t.has_status else (t.plural,)
        found = [_captured().get((t.group, t.version, n)) for n in names]
        if all(found):
            return [dict(e) for e in found if e is not None]
    entry: dict[str, Any] = {
        "name": t.plural,
        "singularName": t.singular,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": list(t.verbs),
    }
    if t.short_names:
        entry["shortNames"] = list(t.short_names)
    if t.categories:
        entry["categories"] = list(t.categories)
    out = [entry]
    if t.has_status:
        out.append(
            {
                "name": f"{t.plural}/status",
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": list(STATUS_VERBS),
            }
        )
    return out


def resource_list(registry: Registry, *, group: str, version: str) -> dict[str, Any]:
    """GET /api/v1 or /apis/group/version."""
    resources: list[dict[str, Any]] = []
    for t in registry.resources(group=group, version=version):
        resources.extend(api_resource(t))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def listed_groups(registry: Registry, unavailable: Iterable[str] = ()
                  ) -> list[tuple[str, list[str]]]:
    """The groups discovery lists, with their versions preferred first: the registry's, and
    the `unavailable` group versions (`metrics.k8s.io/v1beta1`), listed though not served,
    as an aggregated API whose backend is down is."""
    groups = registry.groups()
    for group_version in sorted(unavailable):
        name, _, version = group_version.rpartition("/")
        if not name:
            continue
        versions = next((v for g, v in groups if g == name), None)
        if versions is None:
            groups.append((name, [version]))
        elif version not in versions:
            versions.append(version)
            versions.sort(key=version_priority)
    return groups


def group_list(registry: Registry, unavailable: Iterable[str] = ()) -> dict[str, Any]:
    """GET /apis."""
    groups = []
    for name, versions in listed_groups(registry, unavailable):
        entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        groups.append({"name": name, "versions": entries, "preferredVersion": entries[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(registry: Registry, name: str, unavailable: Iterable[str] = ()
          ) -> dict[str, Any] | None:
    """GET /apis/group, or None when the group is not served."""
    for group_name, versions in listed_groups(registry, unavailable):
        if group_name == name:
            entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
            return {
                "kind": "APIGroup",
                "apiVersion": "v1",
                "name": name,
                "versions": entries,
                "preferredVersion": entries[0],
            }
    return None


def core_versions(*, server_address: str) -> dict[str, Any]:
    """GET /api."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def version_info() -> dict[str, Any]:
    """GET /version: a v1.32 server, as kubectl v1.32 expects."""
    return {
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T00:00:00Z",
        "goVersion": "go1.23.3",
        "compiler": "gc",
        "platform": "linux/amd64",
    }

