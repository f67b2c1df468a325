"""Server-side printing: the meta.k8s.io/v1 `Table` kubectl asks for when it prints for people.

Called by the API handlers when the Accept header asks for `as=Table`.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reconciler.localcluster import resources

Column = tuple[str, str, str, Callable[[Mapping[str, Any]], Any]]  # name, type, format, cell


def human_age(created: str, now: float) -> str:
    """kubectl's short duration: 5s, 3m12s, 4h, 2d5h (apimachinery duration.HumanDuration)."""
    try:
        start = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC
        )
    except (TypeError, ValueError):
        return "<unknown>"
    seconds = int(now - start.timestamp())
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def _meta(obj: Mapping[str, Any], key: str) -> Any:
    return (obj.get("metadata") or {}).get(key)


def _ports(obj: Mapping[str, Any]) -> str:
    ports = (obj.get("spec") or {}).get("ports") or []
    text = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports)
    return text or "<none>"


def _deploy_ready(obj: Mapping[str, Any]) -> str:
    status = obj.get("status") or {}
    return f"{status.get('readyReplicas', 0)}/{(obj.get('spec') or {}).get('replicas', 0)}"


_BUILTIN_COLUMNS: dict[str, list[Column]] = {
    "Namespace": [("Status", "string", "", lambda o: (o.get("status") or {}).get("phase", ""))],
    "ConfigMap": [("Data", "string", "", lambda o: len(o.get("data") or {})
                   + len(o.get("binaryData") or {}))],
    "Secret": [("Type", "string", "", lambda o: o.get("type", "")),
               ("Data", "string", "", lambda o: len(o.get("data") or {}))],
    "ServiceAccount": [("Secrets", "string", "", lambda o: len(o.get("secrets") or []))],
    "Service": [
        ("Type", "string", "", lambda o: (o.get("spec") or {}).get("type", "")),
        ("Cluster-IP", "string", "", lambda o: (o.get("spec") or {}).get("clusterIP", "")),
        ("External-IP", "string", "", lambda o: "<none>"),
        ("Port(s)", "string", "", _ports),
    ],
    "Deployment": [
        ("Ready", "string", "", _deploy_ready),
        ("Up-to-date", "integer", "", lambda o: (o.get("status") or {}).get("updatedReplicas", 0)),
        ("Available", "integer", "",
         lambda o: (o.get("status") or {}).get("availableReplicas", 0)),
    ],
}


def _jsonpath(obj: Any, expression: str) -> Any:
    """A JSONPath subset: `.a.b`, `.a[0]`, `.a[?(@.k=="v")].b`."""
    expression = expression.strip()
    if expression.startswith("{") and expression.endswith("}"):
        expression = expression[1:-1]
    tokens = re.findall(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_\-]+)==[\"']([^\"']*)"
                        r"[\"']\)\]", expression)
    value = obj
    for field, index, key, wanted in tokens:
        if field:
            value = value.get(field) if isinstance(value, dict) else None
        elif index:
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) \
                else None
        else:
            value = next((v for v in value if isinstance(v, dict) and str(v.get(key)) == wanted),
                         None) if isinstance(value, list) else None
        if value is None:
            return None
    return value


def columns(rtype: resources.ResourceType) -> list[Column]:
    """The columns of a kind, without Name (always first) and Age (last for built-ins)."""
    if rtype.custom:
        out: list[Column] = []
        if not rtype.printer_columns:
            return [("Age", "date", "", lambda o: _meta(o, "creationTimestamp"))]
        for column in rtype.printer_columns:
            path = str(column.get("jsonPath", ""))
            out.append((str(column.get("name", "")), str(column.get("type", "string")),
                        str(column.get("format", "")),
                        functools.partial(_jsonpath, expression=path)))
        return out
    return list(_BUILTIN_COLUMNS.get(rtype.kind, []))


def table(
    rtype: resources.ResourceType,
    items: Sequence[Mapping[str, Any]],
    *,
    resource_version: str,
    now: float,
    include_object: str = "Metadata",
) -> dict[str, Any]:
    """A Table of objects, with PartialObjectMetadata rows unless told otherwise."""
    extra = columns(rtype)
    definitions = [{"name": "Name", "type": "string", "format": "name",
                    "description": "Name must be unique within a namespace.", "priority": 0}]
    if rtype.kind == "CustomResourceDefinition":
        extra = [("Created At", "date", "", lambda o: _meta(o, "creationTimestamp"))]
    for name, kind, fmt, _ in extra:
        definitions.append({"name": name, "type": kind, "format": fmt, "description": "",
                            "priority": 0})
    has_age = not rtype.custom and rtype.kind != "CustomResourceDefinition"
    if has_age:
        definitions.append({"name": "Age", "type": "string", "format": "",
                            "description": "CreationTimestamp is a timestamp representing the "
                            "server time when this object was created.", "priority": 0})
    rows = []
    for obj in items:
        cells: list[Any] = [_meta(obj, "name")]
        for _, kind, _, cell in extra:
            value = cell(obj)
            if kind == "date" and isinstance(value, str):
                value = human_age(value, now) if rtype.custom else value
            cells.append(value)
        if has_age:
            cells.append(human_age(_meta(obj, "creationTimestamp") or "", now))
        row: dict[str, Any] = {"cells": cells}
        if include_object == "Object":
            row["object"] = dict(obj)
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": dict(obj.get("metadata") or {})}
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
