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


# Kinds whose names need only be a path segment (ValidateRBACName): `system:metrics-server`.
_PATH_SEGMENT_NAMED = frozenset({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})


def name_errors(rtype: resources.ResourceType, name: str) -> list[statuses.Cause]:
    """metadata.name checks: DNS label for namespaces, DNS-1035 for services, a path
    segment for RBAC kinds, else a DNS subdomain."""
    if rtype.group == "rbac.authorization.k8s.io" and rtype.kind in _PATH_SEGMENT_NAMED:
        return _path_segment_errors(name)
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


def _path_segment_errors(name: str) -> list[statuses.Cause]:
    """What path.IsValidPathSegmentName says of a name."""
    problems = [f"may not be '{name}'"] if name in (".", "..") else []
    problems += [f"may not contain '{c}'" for c in ("/", "%") if c in name]
    return [statuses.Cause(type="FieldValueInvalid", message=f'Invalid value: "{name}": {p}',
                           field="metadata.name") for p in problems]


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
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        _set_default(spec, "externalTrafficPolicy", "Cluster")
    if spec.get("type") == "LoadBalancer":
        _set_default(spec, "allocateLoadBalancerNodePorts", True)


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
    if spec.get("serviceAccountName"):  # the deprecated field mirrors the current one
        _set_default(spec, "serviceAccount", spec["serviceAccountName"])
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
        for env in container.get("env") or []:
            _default_field_ref((env.get("valueFrom") or {}) if isinstance(env, dict) else {})
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if isinstance(container.get(probe), dict):
                _default_probe(container[probe])
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict):
            _default_volume(volume)


def _default_field_ref(holder: dict[str, Any]) -> None:
    if isinstance(holder.get("fieldRef"), dict):
        _set_default(holder["fieldRef"], "apiVersion", "v1")


def _default_probe(probe: dict[str, Any]) -> None:
    _set_default(probe, "timeoutSeconds", 1)
    _set_default(probe, "periodSeconds", 10)
    _set_default(probe, "successThreshold", 1)
    _set_default(probe, "failureThreshold", 3)
    if isinstance(probe.get("httpGet"), dict):
        _set_default(probe["httpGet"], "path", "/")
        _set_default(probe["httpGet"], "scheme", "HTTP")
    if isinstance(probe.get("grpc"), dict):
        _set_default(probe["grpc"], "service", "")


def _default_volume(volume: dict[str, Any]) -> None:
    for source in ("configMap", "secret", "projected", "downwardAPI"):
        if isinstance(volume.get(source), dict):
            _set_default(volume[source], "defaultMode", 420)
    for item in (volume.get("downwardAPI") or {}).get("items") or []:
        if isinstance(item, dict):
            _default_field_ref(item)
    for projection in (volume.get("projected") or {}).get("sources") or []:
        if not isinstance(projection, dict):
            continue
        if isinstance(projection.get("serviceAccountToken"), dict):
            _set_default(projection["serviceAccountToken"], "expirationSeconds", 3600)
        for item in (projection.get("downwardAPI") or {}).get("items") or []:
            if isinstance(item, dict):
                _default_field_ref(item)
    if isinstance(volume.get("hostPath"), dict):
        _set_default(volume["hostPath"], "type", "")


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
    _default_pod_spec(template.setdefault("spec", {}))


def _default_job(obj: dict[str, Any], allocate: Callable[[], str]) -> None:
    del allocate
    spec = obj.setdefault("spec", {})
    _set_default(spec, "parallelism", 1)
    _set_default(spec, "completions", 1)
    _set_default(spec, "backoffLimit", 6)
    _set_default(spec, "completionMode", "NonIndexed")
    _set_default(spec, "suspend", False)
    _set_default(spec, "podReplacementPolicy", "TerminatingOrFailed")
    template = spec.setdefault("template", {})
    uid, name = obj["metadata"].get("uid", ""), obj["metadata"].get("name", "")
    if not spec.get("manualSelector") and spec.get("selector") is None and uid:
        # The job controller's own selector, and the labels that match it (on create).
        _set_default(spec, "manualSelector", False)
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        for key, value in (("batch.kubernetes.io/controller-uid", uid),
                           ("batch.kubernetes.io/job-name", name),
                           ("controller-uid", uid), ("job-name", name)):
            labels.setdefault(key, value)
    _default_pod_spec(template.setdefault("spec", {}))


def _default_crd(obj: dict[str, Any], allocate: Callable[[], str]) -> None:
    del allocate
    spec = obj.setdefault("spec", {})
    _set_default(spec, "conversion", {"strategy": "None"})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        _set_default(names, "singular", str(names["kind"]).lower())
        _set_default(names, "listKind", f"{names['kind']}List")


def _default_statefulset(obj: dict[str, Any], allocate: Callable[[], str]) -> None:
    del allocate
    spec = obj.setdefault("spec", {})
    _set_default(spec, "replicas", 1)
    _set_default(spec, "podManagementPolicy", "OrderedReady")
    _set_default(spec, "revisionHistoryLimit", 10)
    strategy = spec.setdefault("updateStrategy", {})
    if not strategy.get("type"):  # only a defaulted type gets a rollingUpdate made for it
        strategy["type"] = "RollingUpdate"
        strategy.setdefault("rollingUpdate", {})
    rolling = strategy.get("rollingUpdate")
    if strategy["type"] == "RollingUpdate" and isinstance(rolling, dict):
        _set_default(rolling, "partition", 0)
        _set_default(rolling, "maxUnavailable", 1)
    _set_default(spec, "persistentVolumeClaimRetentionPolicy", {})
    retention = spec["persistentVolumeClaimRetentionPolicy"]
    _set_default(retention, "whenDeleted", "Retain")
    _set_default(retention, "whenScaled", "Retain")
    _default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))
    for claim in spec.get("volumeClaimTemplates") or []:
        if not isinstance(claim, dict):
            continue
        _set_default(claim, "apiVersion", "v1")
        _set_default(claim, "kind", "PersistentVolumeClaim")
        _set_default(claim.setdefault("spec", {}), "volumeMode", "Filesystem")
        _set_default(claim, "status", {"phase": "Pending"})


def _default_daemonset(obj: dict[str, Any], allocate: Callable[[], str]) -> None:
    del allocate
    spec = obj.setdefault("spec", {})
    _set_default(spec, "revisionHistoryLimit", 10)
    _set_default(spec, "updateStrategy", {"type": "RollingUpdate"})
    strategy = spec["updateStrategy"]
    if strategy.get("type") == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        _set_default(rolling, "maxUnavailable", 1)
        _set_default(rolling, "maxSurge", 0)
    _default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))


def _default_webhooks(obj: dict[str, Any], allocate: Callable[[], str]) -> None:
    del allocate
    mutating = obj.get("kind") == "MutatingWebhookConfiguration"
    for webhook in obj.get("webhooks") or []:
        if not isinstance(webhook, dict):
            continue
        _set_default(webhook, "failurePolicy", "Fail")
        _set_default(webhook, "matchPolicy", "Equivalent")
        _set_default(webhook, "namespaceSelector", {})
        _set_default(webhook, "objectSelector", {})
        _set_default(webhook, "timeoutSeconds", 10)
        if mutating:
            _set_default(webhook, "reinvocationPolicy", "Never")
        for rule in webhook.get("rules") or []:
            if isinstance(rule, dict):
                _set_default(rule, "scope", "*")
        service = (webhook.get("clientConfig") or {}).get("service")
        if isinstance(service, dict):
            _set_default(service, "port", 443)


def _default_apiservice(obj: dict[str, Any], allocate: Callable[[], str]) -> None:
    del allocate
    service = (obj.get("spec") or {}).get("service")
    if isinstance(service, dict):
        _set_default(service, "port", 443)


def _default_network_policy(obj: dict[str, Any], allocate: Callable[[], str]) -> None:
    del allocate
    spec = obj.setdefault("spec", {})
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            for port in (rule.get("ports") or []) if isinstance(rule, dict) else []:
                if isinstance(port, dict):
                    _set_default(port, "protocol", "TCP")
    if spec.get("policyTypes") is None:
        spec["policyTypes"] = ["Ingress", *(["Egress"] if spec.get("egress") else [])]


_DEFAULTERS: dict[str, Callable[[dict[str, Any], Callable[[], str]], None]] = {
    "StatefulSet": _default_statefulset,
    "DaemonSet": _default_daemonset,
    "ValidatingWebhookConfiguration": _default_webhooks,
    "MutatingWebhookConfiguration": _default_webhooks,
    "APIService": _default_apiservice,
    "NetworkPolicy": _default_network_policy,
    "Namespace": _default_namespace,
    "Secret": _default_secret,
    "Service": _default_service,
    "Deployment": _default_deployment,
    "Job": _default_job,
    "CustomResourceDefinition": _default_crd,
}


# Fields of built-in kinds that Go's JSON encoding leaves out when zero (non-pointer
# fields tagged `omitempty`), among those the corpus writes as 0, false or "".
_OMITTED_WHEN_ZERO = frozenset({"minReadySeconds", "initialDelaySeconds", "readOnly",
                                "subPath", "hostNetwork", "hostPID", "hostIPC", "stdin",
                                "tty"})


def _as_stored(value: Any, node: Mapping[str, Any] | None) -> Any:
    """A built-in kind's value as a typed Go object stores it: nulls gone (a zero value,
    left out), and empty lists and maps left out (`omitempty`), except empty structs
    (`resources: {}`), which Go writes, and a role's `rules` (no `omitempty`)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            child = schema.child_schema(node, key) if node else None
            if item is None or (key in _OMITTED_WHEN_ZERO and item in (0, "", False)):
                continue
            item = _as_stored(item, child)
            if (item == [] and key != "rules") or (item == {} and child is not None
                              and not child.get("properties")
                              and not child.get("x-kubernetes-preserve-unknown-fields")):
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        items = schema.items_schema(node) if node else None
        return [_as_stored(item, items) for item in value]
    return value


def default(rtype: resources.ResourceType, obj: dict[str, Any], *,
            allocate_ip: Callable[[], str]) -> None:
    """Apply the kind's defaults in place."""
    if rtype.custom:
        schema.apply_defaults(obj, rtype.schema)
        return
    if rtype.schema and rtype.kind != "CustomResourceDefinition":
        stored = _as_stored({k: v for k, v in obj.items() if k != "metadata"}, rtype.schema)
        for key in [k for k in obj if k != "metadata"]:
            if key in stored:
                obj[key] = stored[key]
            else:
                del obj[key]
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
    elif rtype.schema:
        result = schema.validate(obj, rtype.schema)
        obj, pruned = result.obj, list(result.pruned)
        for cause in result.causes:
            if cause.type == "FieldValueTypeInvalid":
                # A typed Go decoder refuses such a body before anything is validated; its
                # words name Go types ("cannot unmarshal string into Go struct field ...").
                raise statuses.bad_request(
                    f'{rtype.kind} in version "{rtype.version}" cannot be handled as a '
                    f"{rtype.kind}: {cause.field}: {cause.message}")
            causes.append(cause)
    if rtype.custom:
        return obj, causes, pruned
    if rtype.kind == "Deployment":
        spec = obj.get("spec") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
        wanted = (spec.get("selector") or {}).get("matchLabels") or {}
        if not spec.get("selector"):
            causes.append(statuses.Cause(type="FieldValueRequired", message="Required value",
                                         field="spec.selector"))
        if not spec.get("selector") or any((labels or {}).get(k) != v
                                           for k, v in wanted.items()):
            # No selector selects nothing: it matches no template either.
            shown = _go_map(labels) if labels else "null"
            causes.append(statuses.Cause(
                type="FieldValueInvalid",
                message=f"Invalid value: {shown}: `selector` does not match template `labels`",
                field="spec.template.metadata.labels",
            ))
        if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
            causes.append(statuses.Cause(type="FieldValueRequired", message="Required value",
                                         field="spec.template.spec.containers"))
    elif rtype.kind == "CustomResourceDefinition":
        causes.extend(_crd_errors(obj))
    # A field the schema requires and a kind rule requires too is named once.
    return obj, list(dict.fromkeys(causes)), pruned


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
    """A map as kube-apiserver v1.37 prints a rejected value: JSON, keys sorted."""
    return json.dumps(dict(values), sort_keys=True, separators=(",", ":"))


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


DAEMONSET_TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


def after_generation(rtype: resources.ResourceType, old: Mapping[str, Any] | None,
                     new: dict[str, Any]) -> None:
    """What a kind's strategy records once the generation is known: a DaemonSet's template
    generation annotation, set on create and moved with each change of its template."""
    if rtype.kind != "DaemonSet" or rtype.custom:
        return
    annotations = new["metadata"].setdefault("annotations", {})
    template = (new.get("spec") or {}).get("template")
    if old is None or template != (old.get("spec") or {}).get("template"):
        annotations[DAEMONSET_TEMPLATE_GENERATION] = str(new["metadata"].get("generation", 1))
    elif DAEMONSET_TEMPLATE_GENERATION in (old["metadata"].get("annotations") or {}):
        annotations.setdefault(DAEMONSET_TEMPLATE_GENERATION,
                               old["metadata"]["annotations"][DAEMONSET_TEMPLATE_GENERATION])


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
