"""Decoding of the Kubernetes protobuf envelope for the few kinds kubectl creates as protobuf.

`kubectl create namespace|configmap|secret|serviceaccount` send typed objects as
`application/vnd.kubernetes.protobuf`; the API handlers call `decode()` to turn such a body into
the JSON-like object the rest of the local cluster works with. Other kinds answer 415.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from reconciler.localcluster import statuses

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# field number -> (json name, type); types: str, int, bool, bytes, map_ss, map_sb,
# strs (repeated string), a schema name (message), or [schema name] (repeated message).
_SCHEMAS: dict[str, dict[int, tuple[str, Any]]] = {
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "raw"), 3: ("contentEncoding", "str"),
                4: ("contentType", "str")},
    "TypeMeta": {1: ("apiVersion", "str"), 2: ("kind", "str")},
    "ObjectMeta": {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"),
                   5: ("uid", "str"), 6: ("resourceVersion", "str"), 7: ("generation", "int"),
                   11: ("labels", "map_ss"), 12: ("annotations", "map_ss"),
                   13: ("ownerReferences", ["OwnerReference"]), 14: ("finalizers", "strs")},
    "OwnerReference": {1: ("kind", "str"), 3: ("name", "str"), 4: ("uid", "str"),
                       5: ("apiVersion", "str"), 6: ("controller", "bool"),
                       7: ("blockOwnerDeletion", "bool")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "map_ss"),
                  3: ("binaryData", "map_sb"), 4: ("immutable", "bool")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "map_sb"), 3: ("type", "str"),
               4: ("stringData", "map_ss"), 5: ("immutable", "bool")},
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "strs")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"), 2: ("secrets", ["ObjectReference"]),
                       3: ("imagePullSecrets", ["LocalObjectReference"]),
                       4: ("automountServiceAccountToken", "bool")},
    "ObjectReference": {1: ("kind", "str"), 2: ("namespace", "str"), 3: ("name", "str"),
                        4: ("uid", "str"), 5: ("apiVersion", "str")},
    "LocalObjectReference": {1: ("name", "str")},
    "MapEntry": {1: ("key", "raw"), 2: ("value", "raw")},
}
SUPPORTED = ("ConfigMap", "Secret", "Namespace", "ServiceAccount")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((number, value))
    return out


def _message(data: bytes, schema_name: str) -> dict[str, Any]:
    schema: Mapping[int, tuple[str, Any]] = _SCHEMAS[schema_name]
    out: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if kind == "str":
            if value:  # Go's JSON omits empty strings, zero numbers and false
                out[name] = value.decode()
        elif kind == "raw":
            out[name] = value
        elif kind == "int":
            if value:
                out[name] = value
        elif kind == "bool":
            if value:
                out[name] = True
        elif kind == "strs":
            out.setdefault(name, []).append(value.decode())
        elif kind in ("map_ss", "map_sb"):
            entry = _message(value, "MapEntry")
            raw = entry.get("value", b"")
            text = raw.decode() if kind == "map_ss" else base64.b64encode(raw).decode()
            out.setdefault(name, {})[entry.get("key", b"").decode()] = text
        elif isinstance(kind, list):
            out.setdefault(name, []).append(_message(value, kind[0]))
        else:
            out[name] = _message(value, kind)
    return out


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf-encoded object as JSON-like data; 415 for kinds this server cannot read."""
    accepted = ["application/json", "application/yaml", CONTENT_TYPE]
    if not body.startswith(MAGIC):
        raise statuses.bad_request("provided data does not appear to be a protobuf message, "
                                   "expected prefix [107 56 115 0]")
    try:
        envelope = _message(body[len(MAGIC):], "Unknown")
        type_meta = envelope.get("typeMeta") or {}
        kind = type_meta.get("kind", "")
        if kind not in SUPPORTED:
            raise statuses.unsupported_media_type(accepted[:2])
        obj = _message(envelope.get("raw", b""), kind)
    except (ValueError, UnicodeDecodeError, KeyError) as exc:
        raise statuses.bad_request(f"unable to decode protobuf body: {exc}") from exc
    out: dict[str, Any] = {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind}
    out.update(obj)
    return out
