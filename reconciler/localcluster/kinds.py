"""What a real apiserver does to objects of each kind on write: defaults, resets, validation.

Called by the store for every create and update, after the request's body has been turned into
the candidate object and before it is persisted.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.localcluster import resources, schema, statuses

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)

CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


def name_errors(rtype: resources.ResourceType, name: str) -> list[statuses.Cause]:
    """metadata.name checks: DNS label for namespaces, DNS-1035 for services, else subdomain."""
    if rtype.kind == "Namespace":
        pattern, message, limit = DNS1123_LABEL, _LABEL_MSG, 63
    elif rtype.kind == "Service":
        pattern, message, limit = DNS1035_LABEL, _DNS1035_MSG, 63
    else:
        pattern, message, limit = DNS1123_SUBDOMAIN, _SUBDOMAIN_MSG, 253
    out = []
    if len(name) > limit:
        out.append(statuses.Cause(
            type="FieldValueInvalid",
            message=f'Invalid value: "{name}": must be no more than {limit} characters',
            field="metadata.name",
        ))
    if not pattern.match(name):
        out.append(statuses.Cause(type="FieldValueInvalid",
                                  message=f'Invalid value: "{name}": {message}',
                                  field="metadata.name"))
    return out


def decode_errors(rtype: resources.ResourceType, obj: Mapping[str, Any]) -> str | None:
    """Type errors a typed Go decoder would reject with 400, or None."""
    where = f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}'
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return f"{where}: json: cannot unmarshal into Go struct field {rtype.kind}.metadata"
    for field in ("labels", "annotations"):
        values = (metadata or {}).get(field)
        if values is None:
            continue
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            return (
                f"{where}: json: cannot unmarshal number into Go struct field "
                f"ObjectMeta.metadata.{field} of type string"
            )
    if rtype.kind in ("ConfigMap", "Secret"):
        for field in ("data", "stringData", "binaryData"):
            values = obj.get(field)
            if values is None:
                continue
            if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                return (
                    f"{where}: json: cannot unmarshal number into Go struct field "
                    f"{rtype.kind}.{field} of type string"
                )
    if rtype.kind == "Secret":
        for value in (obj.get("data") or {}).values():
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return f"{where}: illegal base64 data at input byte 0"
    return None


def initial_status(rtype: resources.ResourceType, obj: Mapping[str, Any]) -> Any:
    """The status a create starts with for kinds whose status the client cannot set."""
    if rtype.kind == "Namespace":
        return {"phase": "Active"}
    if rtype.kind == "Service":
        return {"loadBalancer": {}}
    if rtype.kind == "Deployment":
        return {}
    if rtype.kind == "CustomResourceDefinition":
        versions = (obj.get("spec") or {}).get("versions") or []
        storage = [v.get("name") for v in versions if isinstance(v, dict) and v.get("storage")]
        return {"acceptedNames": {"kind": "", "plural": ""}, "storedVersions": storage[:1]}
    return None  # custom resources: no status until a controller writes it


def _set_default(obj: dict[str, Any], key: str, value: Any) -> None:
    if obj.get(key) is None:
        obj[key] = copy.deepcopy(value)


def _default_namespace(obj: dict[str, Any], allocate: Callable[[], str]) -> None:
    del allocate
    name = obj["metadata"]["name"]
    labels = obj["metadata"].setdefault("labels", {})
    labels["kubernetes.io/metadata.name"] = name
    spec = obj.setdefault("spec", {})
    _set_default(spec, "finalizers", ["kubernetes"])


def _default_secret(obj: dict[str, Any], allocate: Callable[[], str]) -> None:
    del allocate
    string_data = obj.pop("stringData", None)
    if string_data:
        data = obj.setdefault("data", {}) or {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data
    _set_default(obj, "type", "Opaque")


def _default_service(obj: dict[str, Any], allocate: Callable[[], str]) -> None:
    spec = obj.setdefault("spec", {})
    _set_default(spec, "type", "ClusterIP")
    _set_default(spec, "sessionAffinity", "None")
    if spec.get("type") != "ExternalName":
        if not spec.get("clusterIP"):
            spec["clusterIP"] = allocate()
        _set_default(spec, "clusterIPs", [spec["clusterIP"]])
        _set_default(spec, "ipFamilies", ["IPv4"])
        _set_default(spec, "ipFamilyPolicy", "SingleStack")
        _set_default(spec, "internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            _set_default(port, "protocol", "TCP")
            _set_default(port, "targetPort", port.get("port"))


def keep_allocated(old: Mapping[str, Any], new: dict[str, Any]) -> None:
    """An update that leaves out a Service's allocated cluster IP keeps it, as on a real
    server."""
    before = old.get("spec") or {}
    after = new.setdefault("spec", {})
    for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        if key in before and not after.get(key):
            after[key] = copy.deepcopy(before[key])


def _default_pod_spec(spec: dict[str, Any]) -> None:
    _set_default(spec, "restartPolicy", "Always")
    _set_default(spec, "terminationGracePeriodSeconds", 30)
    _set_default(spec, "dnsPolicy", "ClusterFirst")
    _set_default(spec, "securityContext", {})
    _set_default(spec, "schedulerName", "default-scheduler")
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if not isinstance(container, dict):
            continue
        image = str(container.get("image", ""))
        tag = image.rsplit("/", 1)[-1]
        latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
        _set_default(container, "imagePullPolicy", "Always" if latest else "IfNotPresent")
        _set_default(container, "terminationMessagePath", "/dev/termination-log")
        _set_default(container, "terminationMessagePolicy", "File")
        _set_default(container, "resources", {})
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                _set_default(port, "protocol", "TCP")


def _default_deployment(obj: dict[str, Any], allocate: Callable[[], str]) -> None:
    del allocate
    spec = obj.setdefault("spec", {})
    _set_default(spec, "replicas", 1)
    _set_default(spec, "revisionHistoryLimit", 10)
    _set_default(spec, "progressDeadlineSeconds", 600)
    _set_default(
        spec,
        "strategy",
        {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
    )
    strategy = spec["strategy"]
    if strategy.get("type") == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        _set_default(rolling, "maxUnavailable", "25%")
        _set_default(rolling, "maxSurge", "25%")
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    _default_pod_spec(template.setdefault("spec", {}))


def _default_job(obj: dict[str, Any], allocate: Callable[[], str]) -> None:
    del allocate
    spec = obj.setdefault("spec", {})
    _set_default(spec, "parallelism", 1)
    _set_default(spec, "completions", 1)
    _set_default(spec, "backoffLimit", 6)
    _set_default(spec, "completionMode", "NonIndexed")
    _set_default(spec, "suspend", False)
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    _default_pod_spec(template.setdefault("spec", {}))


def _default_crd(obj: dict[str, Any], allocate: Callable[[], str]) -> None:
    del allocate
    spec = obj.setdefault("spec", {})
    _set_default(spec, "conversion", {"strategy": "None"})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        _set_default(names, "singular", str(names["kind"]).lower())
        _set_default(names, "listKind", f"{names['kind']}List")


_DEFAULTERS: dict[str, Callable[[dict[str, Any], Callable[[], str]], None]] = {
    "Namespace": _default_namespace,
    "Secret": _default_secret,
    "Service": _default_service,
    "Deployment": _default_deployment,
    "Job": _default_job,
    "CustomResourceDefinition": _default_crd,
}


def default(rtype: resources.ResourceType, obj: dict[str, Any], *,
            allocate_ip: Callable[[], str]) -> None:
    """Apply the kind's defaults in place."""
    if rtype.custom:
        return
    defaulter = _DEFAULTERS.get(rtype.kind)
    if defaulter is not None:
        defaulter(obj, allocate_ip)


def validate(rtype: resources.ResourceType, obj: dict[str, Any]) -> tuple[
        dict[str, Any], list[statuses.Cause], list[str]]:
    """Kind rules; returns the (pruned) object, the errors and the pruned field paths."""
    causes: list[statuses.Cause] = []
    pruned: list[str] = []
    if rtype.custom:
        result = schema.validate(obj, rtype.schema)
        obj, causes, pruned = result.obj, list(result.causes), list(result.pruned)
    elif rtype.kind == "Deployment":
        spec = obj.get("spec") or {}
        if not spec.get("selector"):
            causes.append(statuses.Cause(type="FieldValueRequired", message="Required value",
                                         field="spec.selector"))
        else:
            wanted = (spec.get("selector") or {}).get("matchLabels") or {}
            labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if any(labels.get(k) != v for k, v in wanted.items()):
                causes.append(statuses.Cause(
                    type="FieldValueInvalid",
                    message=f"Invalid value: {_go_map(labels)}: `selector` does not match "
                    "template `labels`",
                    field="spec.template.metadata.labels",
                ))
        if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
            causes.append(statuses.Cause(type="FieldValueRequired", message="Required value",
                                         field="spec.template.spec.containers"))
    elif rtype.kind == "CustomResourceDefinition":
        causes.extend(_crd_errors(obj))
    return obj, causes, pruned


# Fields an update may not change, by kind, as the real validation (ValidateJobUpdate,
# ValidateDeploymentUpdate) refuses them: 422 Invalid, one FieldValueInvalid cause per
# field, its message ending `field is immutable`.
_IMMUTABLE: dict[str, tuple[tuple[str, ...], ...]] = {
    "Job": (("spec", "template"),),
    "Deployment": (("spec", "selector"),),
}


def immutable_errors(rtype: resources.ResourceType, old: Mapping[str, Any],
                     new: Mapping[str, Any]) -> list[statuses.Cause]:
    """Causes for the immutable fields an update of a built-in kind changes."""
    if rtype.custom:
        return []
    out: list[statuses.Cause] = []
    for path in _IMMUTABLE.get(rtype.kind, ()):
        before, after = _at(old, path), _at(new, path)
        if before is not None and before != after:
            shown = json.dumps(after, separators=(",", ":"), sort_keys=True)
            out.append(statuses.Cause(type="FieldValueInvalid",
                                      message=f"Invalid value: {shown}: field is immutable",
                                      field=".".join(path)))
    return out


def _at(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = obj
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _go_map(values: Mapping[str, str]) -> str:
    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(values.items()))
    return "map[string]string{" + inner + "}"


def _crd_errors(obj: Mapping[str, Any]) -> list[statuses.Cause]:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    out: list[statuses.Cause] = []
    group = spec.get("group") or ""
    if not group:
        out.append(statuses.Cause(type="FieldValueRequired", message="Required value",
                                  field="spec.group"))
    for field in ("plural", "kind"):
        if not names.get(field):
            out.append(statuses.Cause(type="FieldValueRequired", message="Required value",
                                      field=f"spec.names.{field}"))
    name = (obj.get("metadata") or {}).get("name", "")
    if group and names.get("plural") and name != f"{names['plural']}.{group}":
        out.append(statuses.Cause(
            type="FieldValueInvalid",
            message=f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
            field="metadata.name",
        ))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        out.append(statuses.Cause(
            type="FieldValueNotSupported",
            message=f'Unsupported value: "{spec.get("scope", "")}": supported values: '
            '"Cluster", "Namespaced"',
            field="spec.scope",
        ))
    versions = [v for v in spec.get("versions") or [] if isinstance(v, dict)]
    if not versions:
        out.append(statuses.Cause(type="FieldValueInvalid",
                                  message="Invalid value: \"null\": must have exactly one version "
                                  "marked as storage version",
                                  field="spec.versions"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        out.append(statuses.Cause(type="FieldValueInvalid",
                                  message="Invalid value: " + _versions_text(versions)
                                  + ": must have exactly one version marked as storage version",
                                  field="spec.versions"))
    return out


def _versions_text(versions: list[dict[str, Any]]) -> str:
    return "[]apiextensions.CustomResourceDefinitionVersion{...}" if versions else "null"


def spec_of(rtype: resources.ResourceType, obj: Mapping[str, Any]) -> Any:
    """The part of an object whose change bumps metadata.generation."""
    if rtype.kind == "Deployment":
        return (obj.get("spec"), (obj.get("metadata") or {}).get("annotations"))
    if rtype.custom:
        skip = ("metadata", "status") if rtype.has_status else ("metadata",)
        return {k: v for k, v in obj.items() if k not in skip and k not in ("apiVersion", "kind")}
    return obj.get("spec")


def selectable_fields(rtype: resources.ResourceType, obj: Mapping[str, Any]) -> dict[str, str]:
    """The fields a fieldSelector can name for this kind."""
    metadata = obj.get("metadata") or {}
    out = {"metadata.name": metadata.get("name", "")}
    if rtype.namespaced:
        out["metadata.namespace"] = metadata.get("namespace", "")
    if rtype.kind == "Namespace":
        out["status.phase"] = (obj.get("status") or {}).get("phase", "")
    if rtype.kind == "Secret":
        out["type"] = obj.get("type", "")
    return out


def field_names(rtype: resources.ResourceType) -> tuple[str, ...]:
    """Field selector names supported for a kind."""
    names = ["metadata.name"]
    if rtype.namespaced:
        names.append("metadata.namespace")
    if rtype.kind == "Namespace":
        names.append("status.phase")
    if rtype.kind == "Secret":
        names.append("type")
    return tuple(names)
